#!/bin/sh
# Add CFR Studio to the desktop's application menu (Linux, this user only): writes
# ~/.local/share/applications/cfr-studio.desktop pointing at this folder's executable, and the
# icon. Run it from the unpacked bundle: ./install-desktop-entry.sh   (undo: rm those two files)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exe="$here/cfr-studio"
[ -x "$exe" ] || { echo "install-desktop-entry: $exe not found (run me from the bundle's folder)" >&2; exit 1; }
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/_internal/resources/cfr-studio.png" "$icons/cfr-studio.png"
version=$("$exe" --version 2>/dev/null | awk '{print $2}')
sed -e "s|^Exec=.*|Exec=\"$exe\" %f|" -e "s|^Icon=.*|Icon=$icons/cfr-studio.png|" \
    "$here/_internal/resources/cfr-studio.desktop" > "$apps/cfr-studio.desktop"
echo "X-AppVersion=${version:-unknown}" >> "$apps/cfr-studio.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" >/dev/null 2>&1 || true
echo "install-desktop-entry: CFR Studio ${version:-} added to $apps"
