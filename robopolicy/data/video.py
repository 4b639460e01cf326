"""MP4 video for datasets, all through PyAV: encode an episode's frames, append an episode to a
file by remuxing (no re-encode, like lerobot's concatenation), cut a file back to a timestamp, and
decode the frames nearest to requested timestamps.

Frame ``k`` of an episode is stored at ``from_timestamp + k / fps`` in its file; the encoder uses
time base ``1 / fps`` so every frame lands on an exact timestamp.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

# SVT-AV1 prints a banner per encoder to stderr; keep errors only unless the user asked otherwise.
os.environ.setdefault("SVT_LOG", "1")

import av  # noqa: E402


@dataclass
class VideoEncoding:
    """How camera streams are encoded; recorded as ``video.*`` entries in meta/info.json."""

    vcodec: str = "libsvtav1"
    """PyAV/FFmpeg encoder; lerobot's default AV1 encoder. Falls back to libx264 if missing."""
    pix_fmt: str = "yuv420p"
    """Pixel format of the stored stream."""
    g: int = 2
    """Keyframe interval in frames (small: cheap random access when decoding a window)."""
    crf: int = 30
    """Constant rate factor (quality; lower is better and bigger)."""
    preset: int | str | None = 12
    """Encoder speed preset (SVT-AV1: 0-13, higher is faster; libx264: e.g. 'veryfast')."""
    fast_decode: int = 0
    """SVT-AV1 fast-decode tuning level (0 = off)."""
    extra_options: dict = field(default_factory=dict)
    """Further encoder options passed to FFmpeg as strings."""

    def resolved_codec(self) -> str:
        for name in (self.vcodec, "libx264"):
            try:
                av.codec.Codec(name, "w")
                return name
            except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
                continue
        raise ValueError(
            f"video encoder {self.vcodec!r} (and fallback libx264) not available in this PyAV build"
        )

    def effective_preset(self, vcodec: str) -> int | str | None:
        """The preset actually passed to the encoder (SVT-AV1 wants a number, libx264 a name)."""
        if vcodec == "libx264":
            return self.preset if isinstance(self.preset, str) else "veryfast"
        return self.preset

    def codec_options(self, vcodec: str) -> dict[str, str]:
        opts = {"g": str(self.g), "crf": str(self.crf)}
        preset = self.effective_preset(vcodec)
        if preset is not None:
            opts["preset"] = str(preset)
        if vcodec == "libsvtav1" and self.fast_decode:
            opts["svtav1-params"] = f"fast-decode={self.fast_decode}"
        if vcodec == "libx264":
            opts["bf"] = "0"  # no B-frames: pts == dts, so remuxing episodes end to end stays simple
        opts.update({k: str(v) for k, v in self.extra_options.items()})
        return opts

    def info(self, height: int, width: int, fps: float, channels: int = 3) -> dict:
        """The ``features[key]["info"]`` entry lerobot 0.6 writes for a video feature."""
        vcodec = self.resolved_codec()
        return {
            "video.height": int(height),
            "video.width": int(width),
            "video.codec": av.codec.Codec(vcodec, "w").canonical_name,
            "video.pix_fmt": self.pix_fmt,
            "video.fps": int(fps) if float(fps).is_integer() else float(fps),
            "video.channels": int(channels),
            "has_audio": False,
            "video.g": self.g,
            "video.crf": self.crf,
            "video.preset": self.effective_preset(vcodec),
            "video.fast_decode": self.fast_decode,
            "video.video_backend": "pyav",
            "video.extra_options": dict(self.extra_options),
            "is_depth_map": False,
        }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_info(cls, info: dict) -> "VideoEncoding":
        """The encoding a dataset's ``features[key]["info"]`` records (defaults for missing keys)."""
        d = cls()
        codec = {"av1": "libsvtav1", "h264": "libx264"}.get(
            info.get("video.codec", "av1"), info.get("video.codec")
        )
        return cls(
            vcodec=codec,
            pix_fmt=info.get("video.pix_fmt", d.pix_fmt),
            g=info.get("video.g", d.g),
            crf=info.get("video.crf", d.crf),
            preset=info.get("video.preset", d.preset),
            fast_decode=info.get("video.fast_decode", d.fast_decode),
            extra_options=dict(info.get("video.extra_options", {})),
        )


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def encode_frames(frames: np.ndarray, path: str | Path, fps: float, encoding: VideoEncoding) -> None:
    """Encode uint8 frames (N, H, W, 3) into a new mp4 at ``path`` (overwritten)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"{path}: video frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    vcodec = encoding.resolved_codec()
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(vcodec, rate=_rate(fps), options=encoding.codec_options(vcodec))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = encoding.pix_fmt
        for k, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = k
            vf.time_base = 1 / _rate(fps)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))


def _stream_duration_ticks(stream) -> int:
    if stream.duration is not None:
        return int(stream.duration)
    raise ValueError(f"{stream.container.name}: video stream has no duration")


def video_duration_s(path: str | Path) -> float:
    """Duration of the first video stream, in seconds (frames / fps for our files)."""
    with open_video(path) as c:
        s = c.streams.video[0]
        return float(_stream_duration_ticks(s) * s.time_base)


def open_video(path: str | Path):
    """av.open with errors that name the file: missing -> FileNotFoundError, unreadable -> ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    try:
        c = av.open(str(path))
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: corrupt or unreadable video ({e})") from e
    if not c.streams.video:
        c.close()
        raise ValueError(f"{path}: no video stream in file")
    return c


def mp4_truncated(path: str | Path) -> str | None:
    """Why the mp4's top-level boxes run past the end of the file (a cut-short copy), or None.

    Cheap (reads box headers only). Needed because a truncated faststart file (index first, as
    ``remux`` writes) still opens and reports its full duration; only decoding would notice."""
    path = Path(path)
    size = path.stat().st_size
    pos = 0
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return f"a box header at byte {pos} is cut short (file has {size} bytes)"
            n, kind = int.from_bytes(head[:4], "big"), head[4:8].decode("latin-1")
            if n == 1:
                if len(head) < 16:
                    return f"a box header at byte {pos} is cut short (file has {size} bytes)"
                n = int.from_bytes(head[8:16], "big")
            elif n == 0:  # the last box runs to the end of the file
                return None
            if n < 8:
                return f"invalid box size {n} at byte {pos}"
            if pos + n > size:
                return f"its {kind!r} box needs {pos + n} bytes, the file has {size}"
            pos += n
    return None


def readable_until_s(path: str | Path) -> float:
    """How far (seconds) the video is intact from its start: the duration of an intact file, the
    start of the last frame that still decodes in a cut-short one (that frame itself is not
    trusted), 0 for a missing or unopenable file."""
    path = Path(path)
    try:
        c = open_video(path)
    except (FileNotFoundError, ValueError):
        return 0.0
    with c:
        s = c.streams.video[0]
        if not mp4_truncated(path):
            return float(_stream_duration_ticks(s) * s.time_base) if s.duration is not None else 0.0
        last = 0.0
        try:
            for fr in c.decode(s):
                if fr.pts is not None:
                    last = float(fr.pts * s.time_base)
        except av.error.FFmpegError:
            pass
        return last


def remux(inputs: list[tuple[str | Path, float | None]], out_path: str | Path) -> list[float]:
    """Write the inputs' packets end to end into ``out_path`` without re-encoding.

    Each input is (path, cut_s): packets at or after ``cut_s`` seconds are dropped (None keeps all).
    Returns each input's start time in the output, in seconds.
    """
    starts: list[float] = []
    with av.open(str(out_path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        ostream = None
        offset = 0  # in output stream ticks
        for path, cut_s in inputs:
            with open_video(path) as c:
                s = c.streams.video[0]
                if ostream is None:
                    ostream = out.add_stream_from_template(s, opaque=True)
                    ostream.time_base = s.time_base
                    tb = s.time_base
                elif s.time_base != tb:
                    raise ValueError(f"{path}: time base {s.time_base} differs from {tb}; cannot append")
                starts.append(float(offset * tb))
                end = 0
                cut = None if cut_s is None else round(cut_s / tb)
                for pkt in c.demux(s):
                    if pkt.dts is None:  # demuxer flush packet
                        continue
                    if cut is not None and pkt.pts >= cut:
                        continue
                    end = max(end, pkt.pts + (pkt.duration or 0))
                    pkt.pts += offset
                    pkt.dts += offset
                    pkt.stream = ostream
                    out.mux(pkt)
                dur = _stream_duration_ticks(s) if cut is None else min(cut, _stream_duration_ticks(s))
                offset += max(dur, end)
    return starts


def decode_at(path: str | Path, timestamps: np.ndarray, tolerance_s: float, seek: bool = True) -> np.ndarray:
    """uint8 frames (Q, H, W, 3) nearest to each query timestamp (seconds, sorted or not).

    Decodes from the keyframe before the first query to the last one. A query farther than
    ``tolerance_s`` from every decoded frame is an error naming the file and the timestamp.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    lo, hi = float(ts.min()), float(ts.max())
    frames: list[np.ndarray] = []
    frame_ts: list[float] = []
    try:
        with open_video(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            if seek and lo > 0:
                c.seek(max(0, round(lo / s.time_base) - 1), stream=s, backward=True, any_frame=False)
            for fr in c.decode(s):
                if fr.pts is None:
                    continue
                t = float(fr.pts * s.time_base)
                if t < lo - tolerance_s:
                    continue
                frames.append(fr.to_ndarray(format="rgb24"))
                frame_ts.append(t)
                if t >= hi - tolerance_s:
                    break
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: error while decoding video ({e})") from e
    if not frames:
        raise ValueError(
            f"{path}: no frame decoded in [{lo:.4f}, {hi:.4f}] s (video shorter than its metadata says?)"
        )
    ft = np.asarray(frame_ts)
    pos = np.clip(np.searchsorted(ft, ts), 1, max(len(ft) - 1, 1))
    left = np.clip(pos - 1, 0, len(ft) - 1)
    right = np.clip(pos, 0, len(ft) - 1)
    pick = np.where(np.abs(ft[left] - ts) <= np.abs(ft[right] - ts), left, right)
    err = np.abs(ft[pick] - ts)
    if (err >= tolerance_s).any():
        bad = int(np.argmax(err))
        raise ValueError(
            f"{path}: no frame within tolerance {tolerance_s} s of timestamp {ts[bad]:.4f} s "
            f"(nearest decoded frame at {ft[pick[bad]]:.4f} s); the video and the parquet timestamps disagree"
        )
    return np.stack([frames[i] for i in pick])
