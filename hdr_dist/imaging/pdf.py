"""PDF pages as grayscale images, rendered with pdfium (``pypdfium2``; Apache-2.0/BSD, where PyMuPDF
is AGPL): a scanned batch saved as a PDF is a file of pages like a multi-page TIFF.

A page is rendered at ``width`` pixels (a form's template width, so that it arrives at the
reference's scale), else at ``DPI``. Its size is known from the page's box before any pixel is
rendered, so ``--max-pixels`` refuses a huge page unrendered. An encrypted, broken or empty PDF is
one error for the file; a page that will not render is that page's error.
"""

from __future__ import annotations

from collections.abc import Iterator

from hdr_dist.common.errors import flag, one_line

SIGNATURE = b"%PDF-"
DPI = 200  # a scan's usual resolution, where no template says otherwise
# The setting, as a page's row names it (as ``images.MAX_PIXELS``, which imports this module).
MAX_PIXELS = flag("max_pixels")


def pages(data: bytes, max_pixels: int, width: int | None = None, colour: bool = False) -> Iterator[tuple]:
    """``(page, pages, width, height, gray, error)`` for each page, as ``images.decode`` yields them."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        why = (
            "encrypted PDF: it needs a password, which a batch job cannot give"
            if "password" in str(e).lower()
            else f"corrupt PDF: {one_line(e)}"
        )
        yield 0, 1, None, None, None, why
        return
    try:
        total = len(pdf)
        if total == 0:
            yield 0, 1, None, None, None, "PDF holds no pages"
        for i in range(total):
            yield render(pdf, i, total, max_pixels, width, colour)
    finally:
        pdf.close()


def render(pdf, i: int, total: int, max_pixels: int, width: int | None, colour: bool = False) -> tuple:
    try:
        page = pdf[i]
        try:
            points_w, points_h = page.get_size()
            scale = width / points_w if width else DPI / 72
            w, h = round(points_w * scale), round(points_h * scale)
            if w * h > max_pixels:
                return (
                    i,
                    total,
                    w,
                    h,
                    None,
                    f"image too large: {w}x{h} pixels exceeds {MAX_PIXELS} {max_pixels:,}",
                )
            gray = page.render(scale=scale, grayscale=not colour, rev_byteorder=colour).to_numpy()
        finally:
            page.close()
    except Exception as e:  # noqa: BLE001 - a page pdfium cannot read is that page's error
        return i, total, None, None, None, f"corrupt PDF: page {i + 1} unreadable: {one_line(e)}"
    return i, total, w, h, gray.reshape(gray.shape[0], gray.shape[1], *gray.shape[2:3]), None
