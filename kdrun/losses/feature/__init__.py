"""Feature knowledge: methods that match intermediate representations."""

from kdrun.losses.feature import (ab, at, fitnet, ft, nst, ofd, reviewkd, simkd,  # noqa: F401
                                  srd, vid)
