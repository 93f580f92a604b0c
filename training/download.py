"""Download the images in one URL file per class, resumably and within bounds (bytes, time,
redirects: see fetch.py), and remove those that do not decode or exceed the app's pixel limit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from fastai.data.transforms import get_image_files
from fastcore.parallel import parallel

from training.errors import InputError
from training.fetch import FetchError, fetch
from training.verify import unusable_images

# the suffixes a downloaded file may keep; anything else is saved as .jpg, as fastai does
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}
SHOWN_PROBLEMS = 20  # the summary's lines of failed URLs and removed files; then "and N more"


@dataclass
class ClassCounts:
    """What happened to one class's URLs in one run."""

    downloaded: int = 0
    already_there: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (URL, why)
    removed: list[tuple[str, str]] = field(default_factory=list)  # (URL or file, why)

    @property
    def failed(self) -> int:
        """How many URLs could not be fetched."""
        return len(self.failures)

    @property
    def removed_as_broken(self) -> int:
        """How many files were deleted because they do not decode or are too large."""
        return len(self.removed)


def class_name(path: Path) -> str:
    """The class that URL file `path` names: its stem, when that is a safe folder name."""
    name = path.stem
    if not name or name.startswith("."):
        raise InputError(
            f"URL file {path} would make a class named {name!r}, which is empty or starts with "
            "a dot (a hidden folder, or one outside --dest): rename the file, e.g. mods.csv"
        )
    # a stem never holds "/"; a backslash is legal on Linux and a separator on Windows
    if "\\" in name:
        raise InputError(
            f"URL file {path} would make a class named {name!r}, which holds a backslash (a path "
            "separator on Windows): rename the file, e.g. mods.csv"
        )
    return name


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
        name = class_name(path)
        if name in by_class:
            raise InputError(
                f"two URL files are named {name!r}: each file's name becomes a class, "
                "so rename one of them"
            )
        by_class[name] = read_url_file(path)[:max_pics]
    return by_class


def url_filename(url: str) -> str:
    """A file name that only `url` gets, so a second run can tell what it already has."""
    # fastai's download_images names files with uuid4 (or the URL's own stem, numbered on
    # clashes), so a rerun cannot tell which URLs it already fetched; a hash of the URL can.
    suffix = Path(urlparse(url).path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        suffix = ".jpg"
    return hashlib.sha1(url.encode()).hexdigest()[:20] + suffix


def _fetch(job: tuple[Path, str], timeout: float, max_bytes: int) -> str | None:
    """Save one URL into its class folder; why not, when it could not be fetched."""
    # fastai's _download_image_inner would also drop the query string (which breaks
    # image-search thumbnail URLs) and hide whether it worked; fetch.py says why it is not used
    dest, url = job
    try:
        fetch(url, dest, max_bytes=max_bytes, timeout=timeout)
    except FetchError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - any failure of one URL is counted, never fatal
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
        return f"{type(error).__name__}: {error}"[:120]
    return None


def download_classes(
    urls_by_class: dict[str, list[str]],
    dest: Path,
    *,
    timeout: float,
    max_bytes: int,
    max_pixels: int,
    n_workers: int = 8,
) -> dict[str, ClassCounts]:
    """Fetch every URL not fetched before into `dest/<class>/` (each within `timeout` seconds
    and `max_bytes`), then remove the images that do not decode or exceed `max_pixels`."""
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
    # parallel's own `timeout` means something else, hence the partial
    one = partial(_fetch, timeout=timeout, max_bytes=max_bytes)
    results = parallel(one, jobs, n_workers=n_workers, threadpool=True, progress=bool(jobs))
    for (target, url), why in zip(jobs, results, strict=True):
        if why is None:
            counts[target.parent.name].downloaded += 1
        else:
            counts[target.parent.name].failures.append((url, why))
    url_of = {
        (name, url_filename(url)): url for name, urls in urls_by_class.items() for url in urls
    }
    for path, why in remove_broken_images(dest, list(urls_by_class), max_pixels).items():
        name = path.relative_to(dest).parts[0]
        counts[name].removed.append((url_of.get((name, path.name), str(path)), why))
    return counts


def remove_broken_images(dest: Path, classes: list[str], max_pixels: int) -> dict[Path, str]:
    """Delete the images in `dest/<class>/` that do not decode or exceed `max_pixels`; say why."""
    files = list(get_image_files(dest, folders=classes))
    unusable = unusable_images(files, max_pixels) if files else {}
    for path in unusable:
        path.unlink()
    return unusable


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


def format_problems(counts: dict[str, ClassCounts], shown: int = SHOWN_PROBLEMS) -> str:
    """One line per URL that failed and per file removed, with why; `shown` lines at most."""
    lines = [
        f"{name}: failed {url}: {why}" for name, c in counts.items() for url, why in c.failures
    ]
    lines += [
        f"{name}: removed {what}: {why}" for name, c in counts.items() for what, why in c.removed
    ]
    if len(lines) > shown:
        lines = [*lines[:shown], f"... and {len(lines) - shown} more"]
    return "\n".join(lines)
