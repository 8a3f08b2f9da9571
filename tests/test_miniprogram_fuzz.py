"""Property-based fuzzing of the mini-program API with schemathesis, in process (WSGI).

Every operation of /api/v1/openapi.json gets generated requests (valid and invalid); each answer
must be no 5xx, a documented status, a body matching the documented schema, with the documented
headers. A fresh bound villager signs each request, so a fuzzed logout cannot starve the others.
Login goes to the loopback fake WeChat API (a fuzzed code is never valid: 401).

    .venv/bin/python -m pytest tests/test_miniprogram_fuzz.py -q
"""

from __future__ import annotations

import itertools

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency of the fuzz run")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from bot.miniprogram.openapi import operations as openapi_operations  # noqa: E402
from tests.api_helpers import FakeKB, mp_session  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.fake_wechat_api import FakeWeChatAPI  # noqa: E402

#: Examples per operation in the fuzzing phase (11 operations; the whole run stays well under a minute).
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    from bot.app import create_app
    from bot.services import build_services
    from handlers.demo import load_demo

    tmp = tmp_path_factory.mktemp("fuzz")
    with FakeWeChatAPI() as api:
        services = build_services(make_settings(
            tmp, wechat_api_base=api.base_url, mini_appid=api.mini_appid, mini_secret=api.mini_secret,
            rate_limit_per_minute=10**9,
        ))
        services.set_knowledge(FakeKB())
        load_demo(services.ctx)
        app = create_app(services=services)
        yield app, services
        services.engine.dispose()


@pytest.fixture(scope="module")
def api_schema(fuzz_env):
    app, _ = fuzz_env
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # A photo's magic bytes cannot be said in JSON Schema: a generated "binary" that is not an
    # image is refused with the documented 415, which is the right answer to valid-looking data.
    from schemathesis.config._checks import PositiveDataAcceptanceConfig

    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=["2xx", "401", "403", "404", "409", "415", "429"])
    return schema


_openids = itertools.count()


def _bound_token(services) -> str:
    """A new villager bound to a demo household, signed in through the real functions."""
    from sqlmodel import Session, select

    from handlers.miniprogram_household import bind_by_token
    from storage.models import Household

    token, user_id = mp_session(services.ctx, openid=f"o-fuzz-{next(_openids)}")
    with Session(services.engine) as s:
        hh = s.exec(select(Household).order_by(Household.id)).first()
    bind_by_token(services.ctx, user_id=user_id, token=hh.bind_token)
    return token


#: Operations whose valid requests must succeed at least once in the positive run.
MUST_SUCCEED = {
    ("POST", "/api/v1/logout"), ("GET", "/api/v1/household"), ("POST", "/api/v1/reports"),
    ("GET", "/api/v1/reports"), ("POST", "/api/v1/ask"), ("GET", "/api/v1/policy/topics"),
    ("GET", "/api/v1/openapi.json"),
}

# schemathesis' own pytest plugin (``from_fixture``/``parametrize``) does not run on pytest 9
# (it reads a private node attribute), so each operation and mode is a plain parametrised test
# driving schemathesis' case strategy through Hypothesis.
OPERATIONS = sorted((path, method) for method, path in openapi_operations())


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_api_never_errors_and_always_matches_its_document(api_schema, fuzz_env, path, method, mode):
    from schemathesis import GenerationMode

    _, services = fuzz_env
    template = path[len("/api/v1"):].replace("<", "{").replace(">", "}")
    operation = api_schema[template][method]
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    raw = operation.definition.raw
    secured = bool(raw.get("security"))
    if mode == "negative" and not (raw.get("parameters") or raw.get("requestBody") or secured):
        pytest.skip("nothing to send wrong: the operation takes no input")

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=generation))
    def run(case):
        headers = {"Authorization": f"Bearer {_bound_token(services)}"} if secured else {}
        statuses.append(case.call_and_validate(headers=headers).status_code)

    statuses: list[int] = []
    run()
    if mode == "positive" and (method, path) in MUST_SUCCEED:
        # The run reached the use case (not only 401s or 400s from a broken fixture).
        assert any(200 <= s < 300 for s in statuses), sorted(set(statuses))
