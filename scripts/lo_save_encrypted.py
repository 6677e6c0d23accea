"""Save OpenDocument files with a password through LibreOffice, as "Save with password" does.

Run with the Python that has LibreOffice's UNO bridge (Debian: python3-uno, i.e. /usr/bin/python3):

    /usr/bin/python3 scripts/lo_save_encrypted.py PASSWORD IN.odt OUT.odt [IN OUT ...]

Used by make_format_fixtures.sh. (Office Open XML files are encrypted there with msoffcrypto-tool:
LibreOffice 7.4 refuses a password for them through UNO.)
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

import uno
from com.sun.star.beans import PropertyValue


def _prop(name, value):
    prop = PropertyValue()
    prop.Name, prop.Value = name, value
    return prop


def main(password, pairs):
    profile = tempfile.mkdtemp(prefix="kb-lo-profile-")
    pipe = f"kb_fixtures_{os.getpid()}"
    office = subprocess.Popen(
        [
            "soffice",
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--invisible",
            "--norestore",
            f"--accept=pipe,name={pipe};urp;",
        ],
        start_new_session=True,  # its own process group: soffice is a launcher that forks soffice.bin
    )
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        deadline = time.monotonic() + 60
        while True:
            try:
                ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except Exception:  # NoConnectException until soffice listens
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        for source, target in pairs:
            url = uno.systemPathToFileUrl(os.path.abspath(source))
            doc = desktop.loadComponentFromURL(url, "_blank", 0, (_prop("Hidden", True),))
            if doc is None:
                raise SystemExit(f"LibreOffice could not open {source} (a stale .~lock file beside it?)")
            doc.storeToURL(
                uno.systemPathToFileUrl(os.path.abspath(target)),
                (_prop("FilterName", "writer8"), _prop("Password", password)),
            )
            doc.close(True)
    finally:
        # Desktop.terminate() through the bridge can hang a headless office; nothing is unsaved.
        os.killpg(office.pid, signal.SIGKILL)
        office.wait(30)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or len(args) % 2 == 0:
        sys.exit(__doc__)
    main(args[0], list(zip(args[1::2], args[2::2], strict=True)))
