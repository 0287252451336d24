"""WCAG contrast of every piece of text on a page, measured in the browser."""

from __future__ import annotations

from playwright.sync_api import Page

# For each visible element with its own text: its colour against the first opaque background
# behind it (WCAG 2 relative luminance); 4.5:1 needed, 3:1 for large text. Text over a
# gradient or image is left out (no single background to measure against).
LOW_CONTRAST_JS = """() => {
  const channels = (c) => c.match(/[\\d.]+/g).map(Number);
  const luminance = (c) => {
    const [r, g, b] = channels(c).slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.backgroundImage !== "none") return null;
      const c = channels(style.backgroundColor);
      if (c.length < 4 || c[3] > 0.9) return style.backgroundColor;
    }
    return "rgb(255, 255, 255)";
  };
  const low = [];
  for (const element of document.querySelectorAll("body *")) {
    const text = [...element.childNodes].filter((n) => n.nodeType === 3)
      .map((n) => n.textContent.trim()).join("");
    const style = getComputedStyle(element);
    if (!text || !element.getClientRects().length || style.visibility === "hidden") continue;
    if (Number(style.opacity) < 1 || element.closest(".skip, .sr-only, [disabled]")) continue;
    const behind = background(element);
    if (behind === null) continue;
    const [a, b] = [luminance(style.color), luminance(behind)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      low.push(`${element.tagName.toLowerCase()}.${element.className} "${text.slice(0, 40)}" ` +
               `${ratio.toFixed(2)}:1`);
    }
  }
  return low;
}"""


def low_contrast(page: Page) -> list[str]:
    """Text on the page below WCAG AA contrast; empty when all of it is readable."""
    found: list[str] = page.evaluate(LOW_CONTRAST_JS)
    return found
