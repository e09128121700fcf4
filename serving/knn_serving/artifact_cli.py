"""`knn-artifact`: inspect and delete artifacts where they live.

    knn-artifact verify URI     check every checksum (exit 0 ok, 3 refused)
    knn-artifact delete URI     delete one version; refuses anything that is
                                not an artifact (no manifest.json), so a wrong
                                URI cannot remove unrelated data

The operator runs `delete` in a short Job for versions beyond history.limit:
the Job mounts the same PVC or credentials as the builder did.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from knn_contracts.artifact import MANIFEST_FILE
from knn_contracts.kmeans import KMeansManifest

from . import artifact
from .errors import ArtifactError, InputError
from .uris import join, resolve


def delete(uri: str) -> str:
    """Delete the artifact at `uri`; returns what was done. Absent is not an error
    (a retried Job finds its work done)."""
    loc = resolve(uri)
    if loc.local is not None:
        path = loc.local
        if not path.exists():
            return f"{uri}: already absent"
        if not (path / MANIFEST_FILE).is_file():
            raise ArtifactError(
                f"{uri}: no {MANIFEST_FILE}; refusing to delete what is not an artifact"
            )
        # Remove the manifest first: a half-deleted directory is then never taken for whole.
        (path / MANIFEST_FILE).unlink()
        shutil.rmtree(path)
        return f"{uri}: deleted"
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(uri)
    if not fs.exists(root):
        return f"{uri}: already absent"
    if not fs.exists(join(root, MANIFEST_FILE)):
        raise ArtifactError(
            f"{uri}: no {MANIFEST_FILE}; refusing to delete what is not an artifact"
        )
    fs.rm_file(join(root, MANIFEST_FILE))
    fs.rm(root, recursive=True)
    return f"{uri}: deleted"


def verify(uri: str) -> str:
    with tempfile.TemporaryDirectory(prefix="knn-verify-") as tmp:
        m = artifact.verify_any(artifact.localize(uri, Path(tmp)))
    what = f"{m.parameters.clusters} clusters of " if isinstance(m, KMeansManifest) else ""
    return (
        f"{uri}: {m.kind} version {m.version} verified "
        f"({len(m.files)} files, {what}{m.count} vectors)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="knn-artifact", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("verify", "check every checksum"), ("delete", "delete one version")):
        p = sub.add_parser(name, help=text)
        p.add_argument("uri", help="the version's directory: path, file://, pvc:// or s3://")
    args = ap.parse_args(argv)
    try:
        print(verify(args.uri) if args.command == "verify" else delete(args.uri))
    except (ArtifactError, InputError) as e:
        print(f"knn-artifact: error: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"knn-artifact: error: {args.uri}: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
