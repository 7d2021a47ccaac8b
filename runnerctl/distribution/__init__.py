"""Runner versions, the verified download cache, and safe extraction into runner folders.

```
cache = RunnerCache(config.manager.cache_dir, github=gh, keep=config.manager.keep_versions)
tarball = cache.ensure(scope, "latest")        # or "2.336.0"
cache.extract(tarball, slot.directory)          # atomic; keeps _work/, runner.log*, runner.pid
installed_version(slot.directory)               # "2.336.0", or None if never installed here
```
"""

from runnerctl.distribution.cache import CachedTarball, RunnerCache
from runnerctl.distribution.download import DownloadPolicy
from runnerctl.distribution.extract import installed_version
from runnerctl.distribution.versions import RunnerDownload, RunnerSource, host_arch

__all__ = [
    "CachedTarball",
    "DownloadPolicy",
    "RunnerCache",
    "RunnerDownload",
    "RunnerSource",
    "host_arch",
    "installed_version",
]
