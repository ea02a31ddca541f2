"""Apache Kafka's jars for the local broker: resolved once from Maven Central into a user cache.

`ensure_jars()` runs Maven on `deploy/kafka-local/pom.xml` (or the copy embedded here when the
package is installed without the checkout) into a temporary sibling of the cache directory and
renames it into place, so an interrupted download is never reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import ConfigError, EnvironmentMissing

__all__ = [
    "INSTALL_HINT",
    "KAFKA_VERSION",
    "POM_XML",
    "ensure_jars",
    "file_lock",
    "first_error_line",
    "jar_cache_dir",
    "require_tools",
]

KAFKA_VERSION = "4.1.2"
SCALA_VERSION = "2.13"
_MARKER_JAR = f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar"

INSTALL_HINT = (
    "install Java 17+ and Maven (e.g. `apt-get install openjdk-17-jre-headless maven`), "
    "or set KAFKA_BOOTSTRAP_SERVERS to an existing Kafka cluster"
)

# The canonical copy is deploy/kafka-local/pom.xml; this one is used when the package is installed
# without the repository checkout. A unit test keeps the two identical.
POM_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Resolves the jars of a local single-node Apache Kafka broker (KRaft) from Maven Central.
     Used by pipeline/devtools/localkafka.py, which embeds a copy (a unit test keeps them equal):
       mvn -q -f deploy/kafka-local/pom.xml dependency:copy-dependencies \\
           -DoutputDirectory=<cache>/libs
     Nothing is built from this pom; it only names what the broker needs on its classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.ardary.pipeline</groupId>
  <artifactId>kafka-local</artifactId>
  <version>1</version>
  <packaging>pom</packaging>

  <properties>
    <kafka.version>4.1.2</kafka.version>
    <log4j.version>2.24.3</log4j.version>
  </properties>

  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${kafka.version}</version>
    </dependency>
    <!-- Kafka 4.1 logs through SLF4J 1.7 (its own slf4j-api), configured with Log4j 2. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${log4j.version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>${log4j.version}</version>
    </dependency>
  </dependencies>
</project>
"""


def jar_cache_dir() -> Path:
    """Where the broker's jars live: `$ARDARY_KAFKA_CACHE`, else the XDG cache directory.

    The default is `${XDG_CACHE_HOME:-~/.cache}/ardary-pipeline/kafka-4.1.2/libs`, shared by every
    checkout and virtualenv of the user so the ~70 MB download happens once.
    """
    override = os.environ.get("ARDARY_KAFKA_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ardary-pipeline" / f"kafka-{KAFKA_VERSION}" / "libs"


def require_tools(*tools: str) -> dict[str, str]:
    """The absolute path of each tool, or EnvironmentMissing naming the missing ones."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        names = {"java": "java (Java 17+)", "mvn": "mvn (Maven)"}
        raise EnvironmentMissing(
            f"the local Kafka broker needs {', '.join(names.get(t, t) for t in missing)}, "
            f"not found on PATH: {INSTALL_HINT}"
        )
    return {tool: path for tool, path in found.items() if path is not None}


def _pom_path(workdir: Path) -> Path:
    """The repository's pom when running from a checkout, else the embedded copy in `workdir`."""
    checkout = Path(__file__).resolve().parents[2] / "deploy" / "kafka-local" / "pom.xml"
    if checkout.is_file():
        return checkout
    written = workdir / "pom.xml"
    written.write_text(POM_XML, encoding="utf-8")
    return written


def _make_cache_dir(path: Path) -> None:
    """Create the cache's parent directory, or fail with one line naming the setting."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"ARDARY_KAFKA_CACHE: cannot create the Kafka jar cache {path}: {exc.strerror}"
        ) from None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never download into the cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("[ERROR]")]
    return (errors or lines or ["no output"])[0][:300]


def ensure_jars(timeout: float = 600) -> Path:
    """The directory holding Kafka's jars, downloading them with Maven on first use.

    Promises that a directory it returns is complete: Maven writes into a temporary sibling that is
    renamed into place only after it succeeded, so an interrupted download is never reused.
    Raises EnvironmentMissing when Java or Maven is missing or Maven cannot fetch the jars.
    """
    libs = jar_cache_dir()
    if (libs / _MARKER_JAR).is_file():
        return libs
    tools = require_tools("java", "mvn")
    _make_cache_dir(libs.parent)
    with file_lock(libs.parent / f".{libs.name}.lock"):
        if (libs / _MARKER_JAR).is_file():  # another process finished while we waited
            return libs
        staging = Path(tempfile.mkdtemp(prefix=f".{libs.name}.partial-", dir=libs.parent))
        try:
            output = staging / "libs"
            pom = _pom_path(staging)
            try:
                done = subprocess.run(
                    [
                        tools["mvn"],
                        "-q",
                        "-B",
                        "-f",
                        str(pom),
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={output}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                raise EnvironmentMissing(
                    f"Maven did not download Kafka {KAFKA_VERSION} within {timeout:.0f}s: "
                    "check network access to Maven Central, "
                    "or set KAFKA_BOOTSTRAP_SERVERS to an existing Kafka cluster"
                ) from None
            if done.returncode != 0 or not (output / _MARKER_JAR).is_file():
                raise EnvironmentMissing(
                    f"Maven could not download Kafka {KAFKA_VERSION} "
                    f"({first_error_line(done.stdout + done.stderr)}): check network access to "
                    "Maven Central, or set KAFKA_BOOTSTRAP_SERVERS to an existing Kafka cluster"
                )
            if libs.exists():  # an incomplete directory left by something else
                shutil.rmtree(libs)
            output.rename(libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs
