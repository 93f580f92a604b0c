"""Download the images in one URL file per class, resumably, and remove the broken ones."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from fastai.data.transforms import get_image_files
from fastai.vision.utils import verify_images
from fastcore.parallel import parallel
from fastdownload import download_url

from training.errors import InputError

# the suffixes a downloaded file may keep; anything else is saved as .jpg, as fastai does
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}


@dataclass
class ClassCounts:
    """What happened to one class's URLs in one run."""

    downloaded: int = 0
    already_there: int = 0
    failed: int = 0
    removed_as_broken: int = 0


def read_url_file(path: Path) -> list[str]:
    """The http(s) URLs in `path`, one per line, without blanks or repeats."""
    if not path.is_file():
        raise InputError(f"URL file {path} not found: pass text files with one image URL per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(
            f"{path} is not a text file: pass text files with one image URL per line"
        ) from None
    urls = []
    for number, line in enumerate(lines, start=1):
        url = line.strip()
        if not url:
            continue
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(
                f"{path} line {number} is not an http(s) URL ({url[:60]!r}): "
                "the file must hold one image URL per line"
            )
        urls.append(url)
    if not urls:
        raise InputError(f"{path} holds no URLs: put one image URL per line in it")
    return list(dict.fromkeys(urls))


def read_url_files(paths: list[Path], max_pics: int) -> dict[str, list[str]]:
    """Map each URL file's stem (the class name) to its first `max_pics` URLs."""
    by_class: dict[str, list[str]] = {}
    for path in paths:
        if path.stem in by_class:
            raise InputError(
                f"two URL files are named {path.stem!r}: each file's name becomes a class, "
                "so rename one of them"
            )
        by_class[path.stem] = read_url_file(path)[:max_pics]
    return by_class


def url_filename(url: str) -> str:
    """A file name that only `url` gets, so a second run can tell what it already has."""
    # fastai's download_images names files with uuid4 (or the URL's own stem, numbered on
    # clashes), so a rerun cannot tell which URLs it already fetched; a hash of the URL can.
    suffix = Path(urlparse(url).path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        suffix = ".jpg"
    return hashlib.sha1(url.encode()).hexdigest()[:20] + suffix


def _fetch(job: tuple[Path, str], timeout: float) -> bool:
    """Save one URL into its class folder; False when it could not be fetched."""
    dest, url = job
    try:
        # what fastai's _download_image_inner does, minus two things: it drops the query
        # string (which breaks image-search thumbnail URLs) and it hides whether it worked
        download_url(url, dest, show_progress=False, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure of one URL is counted, never fatal
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
        return False


def download_classes(
    urls_by_class: dict[str, list[str]], dest: Path, timeout: float = 4, n_workers: int = 8
) -> dict[str, ClassCounts]:
    """Fetch every URL not fetched before into `dest/<class>/`, then remove broken images."""
    counts = {name: ClassCounts() for name in urls_by_class}
    jobs: list[tuple[Path, str]] = []
    for name, urls in urls_by_class.items():
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        for url in urls:
            target = folder / url_filename(url)
            if target.exists():
                counts[name].already_there += 1
            else:
                jobs.append((target, url))
    fetch = partial(_fetch, timeout=timeout)  # parallel's own `timeout` means something else
    results = parallel(fetch, jobs, n_workers=n_workers, threadpool=True, progress=bool(jobs))
    for (target, _url), ok in zip(jobs, results, strict=True):
        if ok:
            counts[target.parent.name].downloaded += 1
        else:
            counts[target.parent.name].failed += 1
    for name, removed in remove_broken_images(dest, list(urls_by_class)).items():
        counts[name].removed_as_broken = removed
    return counts


def remove_broken_images(dest: Path, classes: list[str]) -> Counter[str]:
    """Delete the images in `dest/<class>/` that Pillow cannot open; count them per class."""
    files = get_image_files(dest, folders=classes)
    broken = verify_images(files) if files else []
    for path in broken:
        path.unlink()
    return Counter(path.relative_to(dest).parts[0] for path in broken)


def format_counts(counts: dict[str, ClassCounts]) -> str:
    """A plain-text table: one row per class and one column per outcome."""
    header = ("class", "downloaded", "already there", "failed", "removed as broken")
    rows = [
        (name, str(c.downloaded), str(c.already_there), str(c.failed), str(c.removed_as_broken))
        for name, c in counts.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        numbers = [v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *numbers]
        lines.append("  ".join(cells))
    return "\n".join(lines)
