import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch
from eval_fakes import GoalPolicy, PointSuite, features
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from robopolicy.deploy import ControlLoop, PolicySource, RealClock, SimRobot, make_scheduler
from robopolicy.deploy.client import _CONNECT_KW, PolicyClient, ServerError, ServerUnavailable
from robopolicy.deploy.loop import LoopConfig
from robopolicy.deploy.protocol import pack, unpack
from robopolicy.deploy.server import PolicyServer
from robopolicy.deploy.testing import malformed_messages
from robopolicy.types import IMAGE_PREFIX, STATE_KEY

CAM = IMAGE_PREFIX + "cam"


class HistoryPolicy(GoalPolicy):
    """Action dims: (oldest frame's x, newest frame's x + mean pixel): replies prove which window
    the server saw."""

    def act(self, obs, state):
        chunk, state = super().act(obs, state)
        s = obs[STATE_KEY]
        out = torch.zeros_like(chunk)
        out[..., 0] = s[:, 0, 0, None]
        out[..., 1] = s[:, -1, 0, None]
        if CAM in obs:
            out[..., 1] += obs[CAM].mean(dim=(1, 2, 3, 4))[:, None]
        return out, state


def frame(x, img=False):
    out = {STATE_KEY: np.array([x, 0.0, 1.0, 0.0], np.float32)}
    if img:
        out[CAM] = np.full((4, 6, 3), int(x) % 256, np.uint8)
    return out


@pytest.fixture
def server():
    with PolicyServer(HistoryPolicy(n_action_steps=3, n_obs_steps=3), port=0, max_message_bytes=4096) as srv:
        yield srv


def test_client_matches_the_policy_in_process(server):
    local = PolicySource(HistoryPolicy(n_action_steps=3, n_obs_steps=3), dt=0.05)
    local.reset()
    with PolicyClient(server.url, dt=0.05) as client:
        client.reset()
        for x in range(6):
            if x % 2:
                a, b = client.infer(frame(x), t_obs=10.0 + x), local.infer(frame(x), t_obs=10.0 + x)
                np.testing.assert_array_equal(a.actions, b.actions)
                assert a.t_obs == 10.0 + x and a.dt == 0.05 and a.actions.shape == (1, 3, 2)
                assert set(a.info["server_timing"]) == {"decode_s", "wait_s", "infer_s", "server_s"}
                assert a.latency_s >= a.info["server_timing"]["server_s"] > 0
            else:
                client.observe(frame(x))
                local.observe(frame(x))
        np.testing.assert_array_equal(a.actions[0, 0], [3.0, 5.0])  # window = frames 3, 4, 5
        assert client.hello["spec"]["n_obs_steps"] == 3 and client.hello["dt"] == pytest.approx(0.1)
        assert len(client.latencies) == 3


def test_images_and_language_go_through():
    policy = HistoryPolicy(n_action_steps=2, n_obs_steps=2, feats=features(cameras={"cam": (3, 4, 6)},
                                                                            use_language=True))
    with PolicyServer(policy, port=0) as srv, PolicyClient(srv.url) as client:
        with pytest.raises(ValueError, match="language-conditioned"):
            client.infer(frame(1, img=True))
        c = client.infer(frame(51, img=True), task="push")
        # Window = frames 1 (kept although that request failed on the robot side) and 51.
        np.testing.assert_allclose(c.actions[0, 0], [1.0, 51 + (1 + 51) / 2 / 255], rtol=1e-6)


def test_health_over_websocket_and_http(server):
    with PolicyClient(server.url) as client:
        client.infer(frame(1))
        h = client.health()
    assert h["ok"] and h["clients"] == 1 and h["requests"] >= 3 and h["errors"] == 0
    with urllib.request.urlopen(server.url.replace("ws://", "http://") + "/healthz", timeout=5) as r:
        assert r.status == 200 and json.loads(r.read())["ok"] is True


def test_several_clients_at_once(server):
    errors, results = [], {}

    def run(cid):
        try:
            with PolicyClient(server.url) as c:
                out = [c.infer(frame(100 * cid + i)).actions[0, 0].tolist() for i in range(30)]
            results[cid] = out
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    for cid, out in results.items():  # each session kept its own history
        assert out[0] == [100 * cid, 100 * cid] and out[-1] == [100 * cid + 27, 100 * cid + 29]
    assert server.health()["connections"] == 4


def test_fuzzed_messages_get_error_replies_and_the_server_keeps_serving(server):
    """1000 malformed requests on one connection: an error reply each, no crash, correct answers after."""
    gen = malformed_messages(np.random.default_rng(0), STATE_KEY, (1, 3, 4), server.max_message_bytes)
    codes = {}
    valid = pack({"type": "infer", "id": 77, "obs": {STATE_KEY: np.arange(12, dtype=np.float32).reshape(1, 3, 4)}})
    ws = connect(server.url, compression=None, **_CONNECT_KW)
    assert unpack(ws.recv(timeout=5))["type"] == "hello"
    t0 = time.monotonic()
    for i in range(1000):
        data, expected = next(gen)
        ws.send(data)
        reply = unpack(ws.recv(timeout=5))
        assert reply["type"] == "error", (i, data[:80], reply)
        if expected is not None:  # random bytes / truncations: any protocol error code is right
            assert reply["code"] == expected, (i, data[:80], reply)
        codes[reply["code"]] = codes.get(reply["code"], 0) + 1
        if i % 100 == 99:  # interleaved valid requests keep getting the right answer
            ws.send(valid)
            ok = unpack(ws.recv(timeout=5))
            assert ok["type"] == "chunk" and ok["id"] == 77
            np.testing.assert_array_equal(ok["actions"][0, 0], [0.0, 8.0])
    assert time.monotonic() - t0 < 20
    assert set(codes) >= {"bad_message", "version", "unknown_type", "wrong_shape", "oversized"}
    assert server.health()["errors"] == 1000
    # A frame beyond 4x the limit is not read: that connection closes, the server serves on.
    ws.send(b"\0" * (4 * 4096 + 10))
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)
    with PolicyClient(server.url) as client:
        np.testing.assert_array_equal(client.infer(frame(3)).actions[0, 0], [3.0, 3.0])


def test_wrong_shape_is_an_error_reply_and_the_session_survives(server):
    with PolicyClient(server.url) as client:
        client.infer(frame(1))
        with pytest.raises(ServerError, match=r"wrong_shape.*expected \(1, 3, 4\)"):
            client._request({"type": "infer", "obs": {STATE_KEY: np.zeros((1, 3, 5), np.float32)}})
        with pytest.raises(ValueError, match="has shape"):  # caught on the robot, never sent
            client.infer({STATE_KEY: np.zeros(5, np.float32)})
        np.testing.assert_array_equal(client.infer(frame(2)).actions[0, 0], [1.0, 2.0])


def test_dead_server_is_noticed_and_the_client_reconnects():
    policy = HistoryPolicy(n_action_steps=3, n_obs_steps=3)
    srv = PolicyServer(policy, port=0).start()
    port = srv.port
    client = PolicyClient(srv.url, retry_interval_s=0.1, timeout_s=2.0)
    client.infer(frame(1))
    srv.stop()
    t = time.monotonic()
    with pytest.raises(ServerUnavailable):
        client.infer(frame(2))
    with pytest.raises(ServerUnavailable, match="next connection attempt"):
        client.infer(frame(3))
    assert time.monotonic() - t < 1.0 and not client.connected
    with PolicyServer(policy, port=port):
        time.sleep(0.15)
        c = client.infer(frame(4))
        # The history lived on the client: frames 2, 3, 4 despite the outage.
        np.testing.assert_array_equal(c.actions[0, 0], [2.0, 4.0])
        assert client.reconnects == 1 and client.connected
    client.close()


def test_a_hung_server_times_out():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)  # accepts TCP, never answers the websocket handshake
    try:
        client = PolicyClient(f"ws://127.0.0.1:{sock.getsockname()[1]}", connect_timeout_s=0.2)
        t = time.monotonic()
        with pytest.raises(ServerUnavailable, match="no policy server"):
            client.connect()
        assert time.monotonic() - t < 2.0
    finally:
        sock.close()


def test_control_loop_holds_while_the_server_is_down_and_resumes():
    suite = PointSuite(max_steps=400)
    policy = GoalPolicy(n_action_steps=4, n_obs_steps=2)
    srv = PolicyServer(policy, port=0).start()
    port = srv.port
    clock = RealClock()
    robot = SimRobot(suite, "reach-a", clock=clock)
    client = PolicyClient(srv.url, dt=0.02, retry_interval_s=0.05, timeout_s=1.0)
    restarted = []

    def outage():
        srv.stop()
        time.sleep(0.3)
        restarted.append(PolicyServer(policy, port=port).start())

    killer = threading.Timer(0.1, outage)
    killer.start()
    try:
        with ControlLoop(robot, client, make_scheduler("sync"), LoopConfig(hz=50), clock=clock) as loop:
            res = loop.run_episode(seed=suite.trial_seed("reach-a", 3, "eval"))
    finally:
        killer.join()
        for s in restarted:
            s.stop()
        client.close()
    assert res.success and res.stop_reason == "success"
    down = res.safety_stats.get("hold:server_down", 0)
    assert down >= 8  # ~0.3 s of outage at 50 Hz, the robot held
    assert res.inference_errors >= 1 and client.reconnects == 1


def test_client_module_imports_no_torch():
    code = ("import sys; import robopolicy.deploy.client as c; c.PolicyClient('ws://x:1'); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'envs', 'mujoco')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
