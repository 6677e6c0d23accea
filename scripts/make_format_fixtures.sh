#!/usr/bin/env bash
# Regenerate the office, e-book, notebook and reST fixtures in tests/fixtures/formats/ from the
# Markdown sources in tests/fixtures/formats/src/, with the converters people's files come from:
# pandoc, and LibreOffice re-saving pandoc's output as a desktop user's Writer or Impress does.
# The outputs are committed, so the tests (and CI) need neither converter.
#
#   apt-get install -y pandoc libreoffice-writer-nogui libreoffice-impress-nogui python3-uno
#   bash scripts/make_format_fixtures.sh
#
# encrypted.odt is saved with a password by LibreOffice (scripts/lo_save_encrypted.py, over UNO);
# encrypted.docx is encrypted with msoffcrypto-tool (installed into a throwaway venv), since
# LibreOffice 7.4 takes no OOXML password through UNO. The password of both is "secret".
set -euo pipefail
cd "$(dirname "$0")/.."
src=tests/fixtures/formats/src
out=tests/fixtures/formats
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
soffice() {
    command soffice "-env:UserInstallation=file://$tmp/profile" --headless --convert-to "$1" --outdir "$tmp" "$2" >/dev/null 2>&1
}

pandoc "$src/guide.md" -s -o "$out/guide.pandoc.docx"
pandoc "$src/guide.md" -s -o "$out/guide.pandoc.odt"
pandoc "$src/guide.md" -s -o "$out/guide.epub"
pandoc "$src/guide.md" -s -t rst -o "$out/guide.rst"
pandoc "$src/deck.md" -s --slide-level=1 -o "$out/deck.pandoc.pptx"
pandoc "$src/notebook.md" -s -o "$out/notebook.ipynb"

soffice 'docx:MS Word 2007 XML' "$out/guide.pandoc.odt"
mv "$tmp/guide.pandoc.docx" "$out/guide.libreoffice.docx"
soffice odt "$out/guide.pandoc.docx"
mv "$tmp/guide.pandoc.odt" "$out/guide.libreoffice.odt"
soffice 'pptx:Impress MS PowerPoint 2007 XML' "$out/deck.pandoc.pptx"
mv "$tmp/deck.pandoc.pptx" "$out/deck.libreoffice.pptx"

/usr/bin/python3 scripts/lo_save_encrypted.py secret "$out/guide.libreoffice.odt" "$out/encrypted.odt"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q msoffcrypto-tool
"$tmp/venv/bin/msoffcrypto-tool" -e -p secret "$out/guide.libreoffice.docx" "$out/encrypted.docx"
ls -l "$out"
