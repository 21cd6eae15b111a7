#!/usr/bin/env python3
"""Build a training set of photographs from Debian wallpaper packages, reproducibly.

    python scripts/training_photos.py [--out runs/photos_extra] [--cache runs/photos_cache]
                                      [--seed 0] [--packages PKG[=VERSION] ...] [--max-side N]
                                      [--list] [--sheet SHEET.png]

Each package is fetched with ``apt-get download`` (nothing is installed) into the cache folder
and unpacked there with ``dpkg-deb -x``; run ``apt-get update`` once first. Every raster image
in a package gets a decision from the review tables below, made by looking at each image:
only photographs are used (not renders, paintings, vector art, gradients or logos). A file the
tables do not name is skipped as "not reviewed"; ``--sheet`` draws a contact sheet of a
package's images with their decisions, to review new packages or versions.

Each photograph (JPEG) is made RGB 8-bit and downscaled by a factor drawn uniformly from
[2, 4] with a Lanczos filter, which erases the JPEG block and ringing traces (the recipe L3C
used to make lossless-training data from JPEG photos), and saved as a lossless WebP. The factor
is a pure function of ``--seed``, the package and the file's path, so an image's output does
not depend on which other packages or files are processed. ``manifest.json`` in the output
folder records the packages (version, .deb sha256), every image file's decision, and for each
output its source sha256, scale factor, size and sha256 (of the file and of its pixels), and
the packages' copyright files are copied to ``licenses/``. Rerunning skips what is already
done. The output folder is what ``idfzip train --data`` reads.

These are wallpapers: photographs chosen for looks (shallow depth of field, long exposures,
tone-mapped skies), so they widen the training data; none is a standard test image (no
Kodak, CIFAR-10, or sample images of scikit-image, imageio, SciPy or Matplotlib).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, features


DEFAULT_PACKAGES = [
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "lomiri-wallpapers",
]
SCALE_RANGE = (2.0, 4.0)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".jxl"}
MANIFEST = "manifest.json"
REPO = Path(__file__).resolve().parents[1]

# The package versions whose files were looked at (Debian 12 "bookworm"). Another version is
# used all the same, with a warning: its files may have changed under the same names.
REVIEWED_VERSIONS = {
    "lomiri-wallpapers": "20.04.0-2",
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "lomiri-wallpapers-20.04": "20.04.0-2",
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
    "gnome-backgrounds": "43.1-1",
    "ukui-wallpapers": "20.04.3-1.1",
    "sway-backgrounds": "1.7-6",
    "xfdesktop4-data": "4.18.1-1",
    "debian-edu-artwork-emerald": "2.12.4-1~deb12u1",
    "mypaint-data-extras": "2.0.1-9",
}

# Allow-list: the photographs, by path inside the package, with what they show.
PHOTOS = {
    "lomiri-wallpapers-16.04": {
        "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg": "bridge cables over a tidal flat",
        "usr/share/backgrounds/Dragonfly_by_Bolly.jpg": "dragonfly on a twig, leaves, sky",
        "usr/share/backgrounds/Picture_0B_by_freespace.jpg": "halved fig in a red bowl on concrete",
        "usr/share/backgrounds/Picture_1A_by_freespace.jpg": "paint brushes, close-up",
        "usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg": "room with drum, table, wine bottle",
        "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg": "mountain, autumn forest, meadow",
        "usr/share/backgrounds/free_by_Peter_Nerlich.jpg": "toy bird hanging under lamps",
        "usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg": "two dogs at a wooden house window",
        "usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg": "wall clock, low angle, backlit",
        "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg": "forest stream over rocks",
        "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg": "mountain path, snow, clouds",
        "usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg": "dandelion clocks in grass",
        "usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg": "sunset over hills, stone table",
    },
    "lomiri-wallpapers-20.04": {
        "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg": "nuthatch on a tree trunk",
    },
    "mate-backgrounds": {
        "usr/share/backgrounds/mate/nature/Aqua.jpg": "water drop splash, macro",
        "usr/share/backgrounds/mate/nature/Blinds.jpg": "green leaf veins, macro",
        "usr/share/backgrounds/mate/nature/Dune.jpg": "dune grass, sea, sky",
        "usr/share/backgrounds/mate/nature/FreshFlower.jpg": "orange flower petals, macro",
        "usr/share/backgrounds/mate/nature/Garden.jpg": "red marigold, blurred background",
        "usr/share/backgrounds/mate/nature/GreenMeadow.jpg": "young grass blades",
        "usr/share/backgrounds/mate/nature/LadyBird.jpg": "ladybird on a stem, forget-me-nots",
        "usr/share/backgrounds/mate/nature/RainDrops.jpg": "rain drops on leaves",
        "usr/share/backgrounds/mate/nature/Storm.jpg": "storm clouds over a road, motion blur",
        "usr/share/backgrounds/mate/nature/TwoWings.jpg": "dandelion seeds, blurred flowers",
        "usr/share/backgrounds/mate/nature/Wood.jpg": "wooden planks, shallow focus",
        "usr/share/backgrounds/mate/nature/YellowFlower.jpg": "yellow flower, macro",
    },
    "plasma-workspace-wallpapers": {
        "usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg": "boardwalk by a lake, toned",
        "usr/share/wallpapers/ColdRipple/contents/images/2560x1600.jpg": "jetty in fog (black and white)",
        "usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg": "stacked plastic cups from above",
        "usr/share/wallpapers/DarkestHour/contents/images/2560x1600.jpg": "misty lake at dusk",
        "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg": "rowing boats on a lake shore, sunset",
        "usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg": "autumn leaves on the ground, bokeh",
        "usr/share/wallpapers/Grey/contents/images/2560x1600.jpg": "building facade ribbons (greyscale JPEG)",
        "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg": "kite in a blue sky with clouds",
        "usr/share/wallpapers/OneStandsOut/contents/images/2560x1600.jpg": "moss from above, one orange sprig",
        "usr/share/wallpapers/Path/contents/images/2560x1600.jpg": "path through a spruce forest",
        "usr/share/wallpapers/summer_1am/contents/images/2560x1600.jpg": "lake and reeds at dawn",
    },
}

# Deny-list: the other image files of the reviewed packages, by pattern (first match wins).
ARTWORK = "artwork, not a photograph"
REJECTED = {
    "lomiri-wallpapers": [
        ("usr/share/backgrounds/warty-final-ubuntu.png", ARTWORK + " (abstract render)"),
    ],
    "lomiri-wallpapers-16.04": [
        ("*/analogpattern_by_Peter_Nerlich.jpg",
         "photographed texture under a strong artificial colour-gradient overlay"),
        ("*/umang_by_Abhishek_Mudgal.jpg", ARTWORK + " (abstract colour gradient)"),
    ],
    "lomiri-wallpapers-20.04": [
        ("*/Fossa_by_Jasper_Roks.jpg", ARTWORK + " (abstract render)"),
        ("*/Infinite-Sea_by_Aury88.jpg", ARTWORK + " (digital composite: milky way, sea, shapes)"),
        ("*/Painting-Colors_by__herobrine7gamer.jpg", ARTWORK + " (flat colour stripes)"),
    ],
    "mate-backgrounds": [
        ("usr/share/backgrounds/mate/abstract/Elephants*", ARTWORK + " (painting)"),
        ("usr/share/backgrounds/mate/abstract/*", ARTWORK + " (vector shapes and gradients)"),
        ("usr/share/backgrounds/mate/desktop/Ubuntu-Mate-*",
         ARTWORK + " (blurred aurora with sharp synthetic stars)"),
        ("usr/share/backgrounds/mate/desktop/*", ARTWORK + " (logos, stripes, flat colour)"),
    ],
    "plasma-workspace-wallpapers": [
        ("*/contents/screenshot.*", "preview thumbnail of a wallpaper"),
        ("usr/share/wallpapers/Autumn/*", ARTWORK + " (digital painting)"),
        ("usr/share/wallpapers/Volna/*", ARTWORK + " (render of a stylised beach)"),
        ("usr/share/wallpapers/MilkyWay/*", ARTWORK + " (particles on a gradient)"),
        ("usr/share/wallpapers/SafeLanding/*", ARTWORK + " (illustration)"),
        ("usr/share/wallpapers/FlyingKonqui/*", ARTWORK + " (cartoon mascot)"),
        ("usr/share/wallpapers/*", ARTWORK + " (polygon, gradient or geometric render)"),
    ],
}
# Packages looked at and not used: every image file in them is rejected with this reason.
REJECTED_PACKAGES = {
    "gnome-backgrounds": ARTWORK + ": renders, patterns and vector art (GNOME 43)",
    "ukui-wallpapers": ARTWORK + ": vector and 3D renders",
    "sway-backgrounds": ARTWORK + ": logo on a gradient",
    "xfdesktop4-data": ARTWORK + ": mouse logo on gradients, icons",
    "debian-edu-artwork-emerald": ARTWORK + ": theme renders, logos",
    "mypaint-data-extras": "paper and canvas textures, 256-960 px palette PNGs (too small to downscale)",
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def review(package: str, path: str) -> tuple[str, str]:
    """(decision, reason) for an image file at ``path`` inside ``package``."""
    if path in PHOTOS.get(package, {}):
        return "photo", PHOTOS[package][path]
    if package in REJECTED_PACKAGES:
        return "rejected", REJECTED_PACKAGES[package]
    for pattern, reason in REJECTED.get(package, []):
        if fnmatch.fnmatchcase(path, pattern):
            return "rejected", reason
    return "not reviewed", "not in the script's review tables: skipped"


def output_name(package: str, path: str) -> str:
    """``PACKAGE_NAME.webp``; NAME is the wallpaper's folder for Plasma's layout."""
    parts = path.split("/")
    stem = parts[-4] if parts[-3:-1] == ["contents", "images"] else Path(path).stem
    return f"{package}_{stem}.webp"


def scale_factor(seed: int, key: str, low: float = SCALE_RANGE[0],
                 high: float = SCALE_RANGE[1]) -> float:
    """A factor uniform in [low, high), a pure function of (seed, key)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return low + (high - low) * (int.from_bytes(digest[:8], "big") / 2**64)


def downscale(image: Image.Image, factor: float, max_side: int | None = None) -> Image.Image:
    """RGB 8-bit, EXIF-oriented, reduced by ``factor`` (more if the long side would exceed
    ``max_side``) with a Lanczos filter. Each side is ``max(1, round(side / factor))``."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith(("I", "F")) or image.mode == "CMYK":
        raise ValueError(f"mode {image.mode} is not handled (8-bit RGB, L, P or RGBA only)")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            raise ValueError("image has transparent pixels")
        image = rgba
    image = image.convert("RGB")
    width, height = image.size
    if max_side is not None:
        factor = max(factor, max(width, height) / max_side)
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=None)


def process_image(source: Path, out: Path, seed: int, key: str,
                  max_side: int | None = None) -> dict:
    """Downscale ``source`` into the lossless WebP ``out`` (written atomically); its manifest
    entry (without the package fields)."""
    factor = scale_factor(seed, key)
    with Image.open(source) as im:
        src_format, src_mode, src_size = im.format, im.mode, im.size
        small = downscale(im, factor, max_side)
    pixels = np.asarray(small)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".webp")
    os.close(fd)
    try:
        small.save(tmp, "WEBP", lossless=True, method=6)
        with Image.open(tmp) as check:  # lossless: must decode to the very same pixels
            if not np.array_equal(np.asarray(check.convert("RGB")), pixels):
                raise RuntimeError(f"{out.name}: WebP round trip changed the pixels")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {
        "file": out.name,
        "source_sha256": sha256_file(source),
        "source_format": src_format,
        "source_mode": src_mode,
        "source_size": list(src_size),
        "seed": seed,
        "scale": factor,
        "effective_scale": max(src_size) / max(small.size),
        "size": list(small.size),
        "pixels": small.size[0] * small.size[1],
        "bytes": out.stat().st_size,
        "sha256": sha256_file(out),
        "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
    }


# --- packages --------------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit(f"training_photos: {cmd[0]} not found (this script needs Debian's apt and dpkg)")
    except subprocess.CalledProcessError as err:
        sys.exit(f"training_photos: {' '.join(cmd)} failed:\n{err.stderr.strip()}\n"
                 "(run 'apt-get update' first; a pinned version may no longer be served)")
    return done.stdout


def deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field]).strip()


def fetch_package(spec: str, cache: Path) -> dict:
    """Download (unless cached) and unpack a package; ``spec`` is NAME or NAME=VERSION."""
    name, _, pinned = spec.partition("=")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)

    def cached() -> Path | None:
        found = {deb_field(p, "Version"): p for p in sorted(debs.glob(f"{name}_*.deb"))
                 if deb_field(p, "Package") == name}
        for want in (pinned, REVIEWED_VERSIONS.get(name)):
            if want and want in found:
                return found[want]
        return None if pinned or not found else found[sorted(found)[-1]]

    deb = cached()
    if deb is None:
        print(f"  apt-get download {spec}", flush=True)
        _run(["apt-get", "download", spec], cwd=debs)
        deb = cached()
        if deb is None:
            sys.exit(f"training_photos: apt-get download {spec} left no {name}_*.deb in {debs}")
    version = deb_field(deb, "Version")
    root = cache / "unpacked" / f"{name}_{version.replace(':', '%3a')}"
    if not (root / ".unpacked").is_file():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        (root / ".unpacked").touch()
    if REVIEWED_VERSIONS.get(name, version) != version:
        print(f"  warning: {name} {version} is not the reviewed version "
              f"{REVIEWED_VERSIONS[name]}: check its images (--sheet)", flush=True)
    return {"name": name, "version": version, "architecture": deb_field(deb, "Architecture"),
            "deb": deb.name, "deb_sha256": sha256_file(deb),
            "reviewed_version": REVIEWED_VERSIONS.get(name), "root": root}


def package_images(root: Path) -> tuple[list[str], int]:
    """Image files (paths relative to ``root``), sorted, and the number of symlinks skipped."""
    files, links = [], 0
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.is_symlink():
            links += 1
        elif p.is_file():
            files.append(p.relative_to(root).as_posix())
    return files, links


def contact_sheet(entries: list[tuple[Path, str]], out: Path, tile: int = 360) -> None:
    """A PNG of thumbnails labelled with their decisions, for reviewing packages by eye."""
    from PIL import ImageDraw
    columns = 4
    rows = max(1, -(-len(entries) // columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile * 3 // 4 + 28)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, label) in enumerate(entries):
        x, y = (i % columns) * tile, (i // columns) * (tile * 3 // 4 + 28)
        try:
            with Image.open(path) as im:
                im.draft("RGB", (tile * 2, tile * 2))
                thumb = im.convert("RGB")
            thumb.thumbnail((tile - 4, tile * 3 // 4 - 4))
            sheet.paste(thumb, (x, y))
        except (OSError, ValueError):
            label = "unreadable " + label
        draw.text((x + 2, y + tile * 3 // 4), f"{i}: {label}"[:60], fill="black")
        draw.text((x + 2, y + tile * 3 // 4 + 12), path.name[-58:], fill="grey")
    sheet.save(out)


# --- main ------------------------------------------------------------------------------------

def load_manifest(out: Path) -> dict:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def os_release() -> str | None:
    try:
        fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().split("\n")
                      if "=" in line)
    except OSError:
        return None
    return fields.get("PRETTY_NAME", "").strip('"') or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "photos_extra",
                    help="output folder (default: runs/photos_extra in the repository)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "photos_cache",
                    help="where .deb files are downloaded and unpacked "
                         "(default: runs/photos_cache in the repository)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the scale factors (default 0)")
    ap.add_argument("--packages", nargs="+", default=DEFAULT_PACKAGES, metavar="PKG[=VERSION]",
                    help="Debian packages to use (default: %(default)s)")
    ap.add_argument("--max-side", type=int, default=None,
                    help="downscale more where the long side would exceed this")
    ap.add_argument("--list", action="store_true",
                    help="print every image file's decision and stop (downloads, makes nothing)")
    ap.add_argument("--sheet", type=Path, default=None,
                    help="also write a contact sheet PNG of the packages' images with decisions")
    args = ap.parse_args(argv)

    out, cache = args.out, args.cache
    print(f"packages: {' '.join(args.packages)}", flush=True)
    packages, jobs, sheet = [], [], []
    for spec in args.packages:
        info = fetch_package(spec, cache)
        files, links = package_images(info["root"])
        decisions = []
        for path in files:
            decision, reason = review(info["name"], path)
            entry = {"path": path, "decision": decision, "reason": reason}
            if decision == "photo":
                entry["output"] = output_name(info["name"], path)
                jobs.append((info, path, entry["output"]))
            decisions.append(entry)
            sheet.append((info["root"] / path, f"{decision}: {info['name']}"))
        counts = {d: sum(e["decision"] == d for e in decisions)
                  for d in ("photo", "rejected", "not reviewed")}
        print(f"{info['name']} {info['version']}: {len(files)} image files "
              f"({', '.join(f'{n} {d}' for d, n in counts.items())}), "
              f"{links} symlinks skipped", flush=True)
        packages.append({k: v for k, v in info.items() if k != "root"}
                        | {"symlinks_skipped": links, "files": decisions})
        if args.list:
            for e in decisions:
                print(f"  {e['decision']:>12}  {e['path']}  ({e['reason']})")
    if args.sheet:
        contact_sheet(sheet, args.sheet)
        print(f"contact sheet: {args.sheet}")
    if args.list:
        return 0

    names = [name for _, _, name in jobs]
    if len(set(names)) != len(names):
        sys.exit("training_photos: two photographs map to the same output name")
    out.mkdir(parents=True, exist_ok=True)
    old = {e["file"]: e for e in load_manifest(out).get("images", [])}
    images = []
    for i, (info, path, name) in enumerate(jobs, 1):
        key = f"{info['name']}/{path}"
        source, target = info["root"] / path, out / name
        prev = old.get(name)
        factor = scale_factor(args.seed, key)
        if (prev and target.is_file() and prev.get("seed") == args.seed
                and prev.get("scale") == factor and prev.get("max_side") == args.max_side
                and prev.get("source_sha256") == sha256_file(source)
                and prev.get("sha256") == sha256_file(target)):
            entry = prev
            status = "kept"
        else:
            entry = process_image(source, target, args.seed, key, args.max_side)
            status = "made"
        entry = {"file": name, "package": info["name"], "version": info["version"],
                 "source": path} | {k: v for k, v in entry.items()
                                    if k not in ("file", "package", "version", "source")}
        entry["max_side"] = args.max_side
        images.append(entry)
        print(f"[{i}/{len(jobs)}] {status} {name}: {entry['source_size'][0]}x"
              f"{entry['source_size'][1]} / {entry['scale']:.3f} -> "
              f"{entry['size'][0]}x{entry['size'][1]}, {entry['bytes']:,} bytes", flush=True)
    for name in sorted(set(old) - set(names)):  # made by an earlier run, no longer wanted
        if (out / name).is_file():
            (out / name).unlink()
            print(f"removed {name} (no longer in the set)")

    licenses = out / "licenses"
    licenses.mkdir(exist_ok=True)
    for info in packages:
        copyright_file = (cache / "unpacked" / f"{info['name']}_{info['version'].replace(':', '%3a')}"
                          / "usr/share/doc" / info["name"] / "copyright")
        if copyright_file.is_file():
            shutil.copyfile(copyright_file, licenses / f"{info['name']}.copyright")
            info["copyright"] = f"licenses/{info['name']}.copyright"
    ours = set(names) | {MANIFEST}
    strays = [p.name for p in out.iterdir()
              if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in ours]
    if strays:
        print(f"warning: {len(strays)} other image files in {out} will be trained on too: "
              f"{', '.join(sorted(strays)[:5])}")

    manifest = {
        "made_by": "scripts/training_photos.py",
        "recipe": {"scale_range": list(SCALE_RANGE), "scale": "sha256(f'{seed}\\0{package}/{path}')",
                   "filter": "Pillow LANCZOS, reducing_gap=None", "mode": "RGB 8-bit",
                   "format": "WebP lossless, method 6", "seed": args.seed,
                   "max_side": args.max_side},
        "environment": {"os": os_release(), "python": sys.version.split()[0],
                        "pillow": Image.__version__, "libwebp": features.version("webp"),
                        "numpy": np.__version__},
        "packages": packages,
        "rejected_packages_reviewed": REJECTED_PACKAGES,
        "images": images,
        "totals": {"images": len(images), "pixels": sum(e["pixels"] for e in images),
                   "bytes": sum(e["bytes"] for e in images)},
    }
    write_json(out / MANIFEST, manifest)
    t = manifest["totals"]
    print(f"{t['images']} images, {t['pixels'] / 1e6:.1f} Mpixel, {t['bytes'] / 1e6:.1f} MB "
          f"in {out} (manifest: {out / MANIFEST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
