"""The API Teacher against a real local HTTP server speaking both APIs, through the real SDKs."""

import base64
import io
import json

import numpy as np
import pytest
from fake_api_server import all_ones, sentence_count, user_part

from ares_jax.config import TeacherConfig
from ares_jax.data.shapes import ShapesTaskConfig, make_split, png_bytes
from ares_jax.teacher import run_batch
from ares_jax.teacher.backends import AnthropicBackend, OpenAIBackend, TeacherSetupError
from ares_jax.teacher.cache import TeacherCache
from ares_jax.teacher.service import APITeacher, TeacherBudgetExhausted, TeacherUnavailable, _RateLimiter
from ares_jax.text import split_sentences

KEY = "sk-test-SECRET-key-0123456789"
PROBLEMS = make_split(ShapesTaskConfig(), "test", 4)


@pytest.fixture(params=["openai", "anthropic"])
def make_teacher(request, server, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", KEY)
    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)

    def make(limits=TeacherConfig(backoff_s=0.01), timeout_s=5.0):
        if request.param == "openai":
            backend = OpenAIBackend("gpt-test", "TEST_TEACHER_KEY", f"http://127.0.0.1:{server.port}/v1", timeout_s)
        else:
            backend = AnthropicBackend("claude-test", "TEST_TEACHER_KEY", f"http://127.0.0.1:{server.port}", timeout_s)
        teacher = APITeacher(backend, TeacherCache(tmp_path / "teacher_cache.sqlite"), limits, sleep=fake_sleep)
        teacher.sleeps = sleeps
        return teacher

    make.api = request.param
    return make


def score(teacher, problem=PROBLEMS[0], sentences=None):
    sentences = sentences or split_sentences(problem.solution)
    return run_batch(teacher.score_sentences, [(problem, sentences)])[0]


def test_normal_answer_and_the_image_in_each_apis_format(make_teacher, server):
    teacher = make_teacher()
    problem = PROBLEMS[0]
    assert score(teacher) == [1.0] * len(split_sentences(problem.solution))
    (request,) = server.requests
    body = request["body"]
    assert body["temperature"] == 0.0
    if make_teacher.api == "openai":
        assert request["path"] == "/v1/chat/completions" and body["model"] == "gpt-test"
        (image,) = user_part(body, "image_url")
        prefix = "data:image/png;base64,"
        assert image["image_url"]["url"].startswith(prefix)
        sent = base64.b64decode(image["image_url"]["url"][len(prefix) :])
    else:
        assert request["path"] == "/v1/messages" and body["model"] == "claude-test"
        (image,) = user_part(body, "image")
        assert image["source"]["type"] == "base64" and image["source"]["media_type"] == "image/png"
        sent = base64.b64decode(image["source"]["data"])
    assert sent == png_bytes(problem.image)
    text = user_part(body, "text")[0]["text"]
    assert f"Correct answer: ({problem.answer_letter})" in text
    assert KEY in " ".join(request["headers"].values())  # the key from the environment is what authenticates
    assert teacher.stats.requests == 1 and teacher.stats.tokens_in == 100 and teacher.stats.tokens_out == 20


def test_repeated_sentences_are_sent_apart_and_scored_apart(make_teacher, server):
    sentences = ["There are 2 red circles.", "There are 2 red circles.", "So the answer is (A)."]
    server.script = ['{"1": 1.0, "2": 0.0, "3": 1.0}']
    assert score(make_teacher(), sentences=sentences) == [1.0, 0.0, 1.0]
    assert sentence_count(server.requests[0]["body"]) == 3


def test_fenced_json(make_teacher, server):
    n = len(split_sentences(PROBLEMS[0].solution))
    server.script = ["Here you go:\n```json\n" + json.dumps({str(i + 1): 0.5 for i in range(n)}) + "\n```"]
    assert score(make_teacher()) == [0.5] * n


def test_malformed_then_repaired(make_teacher, server):
    server.script = ["All sentences look right to me."]
    teacher = make_teacher()
    assert score(teacher) == [1.0] * len(split_sentences(PROBLEMS[0].solution))
    assert len(server.requests) == 2 and teacher.stats.format_errors == 1
    second = json.dumps(server.requests[1]["body"]["messages"])
    assert "All sentences look right to me." in second and "could not be used (no JSON" in second


def test_429_with_retry_after_then_success(make_teacher, server):
    server.script = [{"status": 429, "headers": {"Retry-After": "0.25"}}]
    teacher = make_teacher()
    assert score(teacher) is not None
    assert teacher.sleeps == [0.25] and teacher.stats.retries == 1 and len(server.requests) == 2


def test_500_then_success(make_teacher, server):
    server.script = [{"status": 500}, {"status": 503}]
    teacher = make_teacher()
    assert score(teacher) is not None
    assert teacher.stats.retries == 2 and len(server.requests) == 3
    assert teacher.sleeps[1] > teacher.sleeps[0] * 0.5  # exponential backoff with jitter


def test_timeout_is_retried(make_teacher, server):
    n = len(split_sentences(PROBLEMS[0].solution))
    server.script = [{"text": "{}", "delay": 1.5}]
    teacher = make_teacher(timeout_s=0.5)
    assert score(teacher) == [1.0] * n
    assert teacher.stats.retries == 1


def test_retries_run_out_and_the_round_stops_cleanly(make_teacher, server):
    server.default = lambda body: {"status": 502}
    teacher = make_teacher(TeacherConfig(max_retries=2, backoff_s=0.01))
    with pytest.raises(TeacherUnavailable, match="still failing after 2 retries"):
        score(teacher)
    assert len(server.requests) == 3


def test_count_mismatch_ends_unscored_and_is_counted(make_teacher, server):
    server.default = lambda body: '{"1": 1.0}'
    teacher = make_teacher(TeacherConfig(max_repairs=2))
    assert score(teacher) is None
    assert teacher.stats.unscored == 1 and teacher.stats.format_errors == 3 and len(server.requests) == 3


def test_second_run_is_served_from_the_cache(make_teacher, server, tmp_path):
    first = make_teacher()
    server.script = ['{"1": 1.0}'] * 3  # the first problem ends unscored (count mismatch, repairs fail)
    items = [(p, split_sentences(p.solution)) for p in PROBLEMS]
    results = run_batch(first.score_sentences, items, concurrency=1)
    judged = run_batch(first.judge, [(p, p.solution, "x") for p in PROBLEMS[:2]])
    paid = len(server.requests)
    assert results[0] is None and None not in results[1:] and judged == ["a", "a"]
    assert paid == 3 + 3 + 2
    again = make_teacher()
    assert run_batch(again.score_sentences, items) == results
    assert run_batch(again.judge, [(p, p.solution, "x") for p in PROBLEMS[:2]]) == judged
    assert len(server.requests) == paid and again.stats.requests == 0 and again.stats.cache_hits == 6


def test_a_repair_conversation_cut_short_resumes_without_paying_again(make_teacher, server):
    from ares_jax.teacher.service import TeacherUnavailable as Unavailable

    server.script = ["no json at all", {"status": 400}]  # the repair request fails for good
    with pytest.raises(Unavailable):
        score(make_teacher())
    assert len(server.requests) == 2
    again = make_teacher()
    assert score(again) is not None  # the first (bad) reply comes from the cache, the repair is asked
    assert len(server.requests) == 3 and again.stats.requests == 1 and again.stats.cache_hits == 1
    assert "no json at all" in json.dumps(server.requests[2]["body"]["messages"])


def test_the_key_is_in_no_file_and_no_error(make_teacher, server, tmp_path):
    teacher = make_teacher(TeacherConfig(max_retries=0))
    score(teacher)
    run_batch(teacher.correct, [(PROBLEMS[1], PROBLEMS[1].solution)])
    server.default = lambda body: {"status": 401}
    with pytest.raises(TeacherUnavailable) as failure:
        score(teacher, PROBLEMS[2])
    assert KEY not in str(failure.value) and "401" in str(failure.value)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(KEY.encode() not in p.read_bytes() for p in written)


def test_budget_cap_stops_before_spending_beyond_it(make_teacher, server):
    teacher = make_teacher(TeacherConfig(max_requests=2))
    run_batch(teacher.score_sentences, [(p, split_sentences(p.solution)) for p in PROBLEMS[:2]], concurrency=1)
    with pytest.raises(TeacherBudgetExhausted, match="max_requests \\(2\\)"):
        score(teacher, PROBLEMS[2])
    assert len(server.requests) == 2


def test_a_budget_stop_waits_for_the_replies_in_flight_and_keeps_them(make_teacher, server):
    server.default = lambda body: {"text": all_ones(body), "delay": 0.2}  # replies still on their way
    items = [(p, split_sentences(p.solution)) for p in PROBLEMS]
    teacher = make_teacher(TeacherConfig(max_requests=3))
    with pytest.raises(TeacherBudgetExhausted, match="max_requests \\(3\\)"):
        run_batch(teacher.score_sentences, items, concurrency=4)  # the 4th stops the batch while 3 are in flight
    assert len(server.requests) == 3
    again = make_teacher(TeacherConfig())  # the same cache: the 3 paid replies were kept
    assert run_batch(again.score_sentences, items, concurrency=4) == [[1.0] * len(s) for _, s in items]
    assert len(server.requests) == 4 and again.stats.cache_hits == 3


def estimate(problem):
    """The most a score request may cost at $50 per million output tokens: its max_tokens,
    64 + 16 per sentence. (Each fake reply, 20 tokens, costs $0.001.)"""
    return (64 + 16 * len(split_sentences(problem.solution))) * 50 / 1e6


def test_cost_cap_stops_before_the_request_that_could_pass_it(make_teacher, server):
    cap = 0.002 + estimate(PROBLEMS[2]) - 1e-4  # the third request could pass it, the first two cannot
    assert cap >= 0.001 + estimate(PROBLEMS[1]) and cap >= estimate(PROBLEMS[0])
    teacher = make_teacher(TeacherConfig(max_cost_usd=cap, price_output_per_mtok=50.0))
    score(teacher, PROBLEMS[0])
    score(teacher, PROBLEMS[1])
    assert teacher.stats.cost_usd == pytest.approx(0.002)
    with pytest.raises(TeacherBudgetExhausted, match="would be passed"):
        score(teacher, PROBLEMS[2])
    assert len(server.requests) == 2


def test_cost_cap_counts_requests_in_flight(make_teacher, server):
    cap = estimate(PROBLEMS[0]) + estimate(PROBLEMS[1]) - 1e-4  # the first fits, not the second beside it
    teacher = make_teacher(TeacherConfig(max_cost_usd=cap, price_output_per_mtok=50.0))
    items = [(p, split_sentences(p.solution)) for p in PROBLEMS]
    with pytest.raises(TeacherBudgetExhausted, match=f"in flight up to \\${estimate(PROBLEMS[0]):.4f}"):
        run_batch(teacher.score_sentences, items, concurrency=4)  # the second may not start beside the first
    assert len(server.requests) <= 1


def test_corrections_and_judgements(make_teacher, server):
    problem = PROBLEMS[0]
    server.script = ["{UNCHANGED}", "Corrected: {There is 1 red circle. So the answer is (A).}", '{"better": "B"}']
    teacher = make_teacher()
    assert run_batch(teacher.correct, [(problem, "Orig.")]) == ["Orig."]
    assert run_batch(teacher.correct, [(problem, "Wrong.")]) == ["There is 1 red circle. So the answer is (A)."]
    assert run_batch(teacher.judge, [(problem, "a", "b")]) == ["b"]


def test_missing_key_fails_at_setup_naming_the_variable(monkeypatch):
    monkeypatch.delenv("NO_SUCH_TEACHER_KEY", raising=False)
    for backend in (OpenAIBackend, AnthropicBackend):
        with pytest.raises(TeacherSetupError, match="NO_SUCH_TEACHER_KEY"):
            backend("m", "NO_SUCH_TEACHER_KEY", "http://127.0.0.1:9")


def test_rate_limiter_keeps_one_minute_windows():
    now = [10.0]
    limiter = _RateLimiter(requests_per_minute=2, tokens_per_minute=1000, clock=lambda: now[0])
    limiter.events.extend([(0.0, 100), (10.0, 100)])
    assert limiter.wait_time(100) == pytest.approx(50.0)  # a third request waits for the first to leave
    now[0] = 60.0
    assert limiter.wait_time(100) == 0.0
    tokens = _RateLimiter(0, tokens_per_minute=1000, clock=lambda: now[0])
    tokens.events.extend([(30.0, 600), (40.0, 300)])
    assert tokens.wait_time(200) == pytest.approx(30.0)  # 1100 > 1000 until the 600 leave at t=90
    assert tokens.wait_time(100) == 0.0
    assert _RateLimiter(0, 0).wait_time(10**6) == 0.0  # no limits


def test_images_from_files_are_sent_as_png_and_bad_files_are_named(tmp_path):
    from PIL import Image

    from ares_jax.data import Problem
    from ares_jax.teacher.prompts import problem_image_png

    pixels = PROBLEMS[0].image
    Image.fromarray(pixels).save(tmp_path / "coco.jpg", quality=100)
    from_file = Problem("q", "?", ("a", "b"), 0, image=str(tmp_path / "coco.jpg"))
    decoded = np.asarray(Image.open(io.BytesIO(problem_image_png(from_file))))
    assert decoded.shape == pixels.shape and np.abs(decoded.astype(int) - pixels).mean() < 8  # JPEG is lossy
    # encoded bytes (HF parquet images) are sent as the same picture
    from_bytes = Problem("h", "?", ("a", "b"), 0, image=(tmp_path / "coco.jpg").read_bytes())
    assert problem_image_png(from_bytes) == problem_image_png(from_file)
    assert problem_image_png(Problem("t", "?", ("a", "b"), 0)) is None
    assert problem_image_png(Problem("f", "?", ("a", "b"), 0, features=np.zeros((145, 1024), np.float32))) is None
    (tmp_path / "broken.png").write_text("not an image")
    with pytest.raises(ValueError, match="broken.png: record 'b': image .*broken.png cannot be decoded"):
        problem_image_png(Problem("b", "?", ("a", "b"), 0, image=str(tmp_path / "broken.png")))
