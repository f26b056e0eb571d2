"""`eqarm bench review`: a local web page on which people verify the judge's scores."""

from __future__ import annotations

import sys

from habitat_eqarm.bench.builder.review import ReviewConfig


def make_parser():
    """The `eqarm bench review` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(ReviewConfig)


def main(cfg: ReviewConfig) -> int:
    """Serve the review page until interrupted (Ctrl+C); decisions are saved as they are made."""
    import webbrowser

    from habitat_eqarm.bench.builder.review import ReviewSession, default_out, load_shard

    try:
        from habitat_eqarm.bench.builder.review_server import LOOPBACK, ReviewServer
    except ImportError as err:  # FastAPI and uvicorn come with the `api` extra
        print(
            f"eqarm bench review: error: {err} (pip install 'habitat-eqarm[api]')", file=sys.stderr
        )
        return 1

    items = load_shard(cfg)
    name = cfg.name or f"reviewer {cfg.reviewer} of {cfg.of}"
    session = ReviewSession(items, default_out(cfg), reviewer=name)
    server = ReviewServer(session, cfg.host, cfg.port, cfg.frame_width)
    if cfg.host not in LOOPBACK:
        print(f"WARNING: serving on {cfg.host}: anyone who can reach it can review.")
    progress = session.progress()
    print(f"{name}: {progress['done']} of {progress['total']} items decided")
    print(f"review at {server.url} (Ctrl+C to stop); verified instances go to {session.out}")
    if cfg.open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()  # uvicorn shuts down on Ctrl+C, then re-raises it
    except KeyboardInterrupt:
        print("stopped; every decision so far is saved")
    finally:
        server.close()
    return 0
