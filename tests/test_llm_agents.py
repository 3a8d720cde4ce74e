"""Agent files and per-user overrides: located errors, layering, immutability.

Plain file loading: no model, no server.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest

from services.llm.agents import AgentError, load_agent, load_agents
from services.llm.overrides import AgentCatalog, UserIdError, load_catalog

AGENTS_DIR = Path(__file__).resolve().parents[1] / "agents"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def agent_error(path: Path) -> AgentError:
    with pytest.raises(AgentError) as caught:
        load_agent(path)
    return caught.value


def catalog_error(directory: Path) -> AgentError:
    with pytest.raises(AgentError) as caught:
        load_catalog(directory)
    return caught.value


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """Two valid agents; tests add user files or broken agents."""
    write(tmp_path / "front.yaml", """
        name: front
        system_prompt: |
          You are the front desk. Caller: {{username}}.
        voice: af_heart
        greeting: Hello.
        routes:
          - {intent: booking, agent: desk}
        """)
    write(tmp_path / "desk.yaml", """
        name: desk
        system_prompt: You book things.
        tools: [book_appointment]
        """)
    return tmp_path


@pytest.mark.parametrize(("text", "expected"), [
    ("name: a\nsystem_prompt: Hi.\nspeed: fast\n",
     "a.yaml:3: field 'speed': Input should be a valid number"),
    ("name: a\n# a comment\nsystem_prompt: Hi.\n\nspeed: 0\n",
     "a.yaml:5: field 'speed': Input should be greater than 0"),
    ("name: a\nsystem_prompt: Hi.\ntools:\n  - book_appointment\n  - teleport\n",
     "a.yaml:3: field 'tools': Value error, unknown tool(s) 'teleport'"),
    ("# comment\nname: a\nvoice: af_heart\n",
     "a.yaml:2: field 'system_prompt': Field required"),
    ("name: a\nsystem_prompt: Hi.\nknowledge:\n  top_k: 3\n",
     "a.yaml:3: field 'knowledge.base': Field required"),
    ("name: a\nsystem_prompt: Hi.\nroutes:\n  - intent: faq\n    agent: a\n"
     "  - intent: Bad Intent\n    agent: a\n",
     "a.yaml:6: field 'routes.1.intent': String should match pattern"),
    ("name: a\nsystem_prompt: Hi.\nspeeed: 1.2\n",
     "a.yaml:3: field 'speeed': Extra inputs are not permitted"),
    ("name: a\nsystem_prompt: Hi.\nspeed: 1\nspeed: 2\n",
     "a.yaml:4: field 'speed': given twice (first on line 3)"),
    ("name: a\nsystem_prompt: Hi.\nvoice: [unclosed\ngreeting: Hi\n",
     "a.yaml:4: invalid YAML: while parsing a flow sequence (line 3)"),
    ("name: a\nsystem_prompt: Hi.\n  voice: x\n",
     "a.yaml:3: invalid YAML: mapping values are not allowed here"),
    ("- name: a\n", "a.yaml:1: expected a mapping of agent fields, got list"),
])
def test_invalid_content_names_file_line_and_field(
        tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(text, encoding="utf-8")
    error = agent_error(path)
    assert str(error).startswith(f"{tmp_path}/{expected}")
    assert error.problems and error.problems[0].path == path


def test_every_problem_of_every_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "name: a\nsystem_prompt: Hi.\nspeed: -1\nvoice: 3\n")
    write(tmp_path / "b.yaml", "name: b\n")
    with pytest.raises(AgentError) as caught:
        load_agents(tmp_path)
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{tmp_path}/a.yaml:3: field 'speed': Input should be greater than 0",
        f"{tmp_path}/a.yaml:4: field 'voice': Input should be a valid string",
        f"{tmp_path}/b.yaml:1: field 'system_prompt': Field required",
    ]


def test_a_route_to_an_unknown_agent_points_at_its_line(agents_dir: Path) -> None:
    write(agents_dir / "front.yaml", """
        name: front
        system_prompt: Hi.
        routes:
          - intent: booking
            agent: desk
          - intent: sales
            agent: nobody
        """)
    error = catalog_error(agents_dir)
    assert str(error) == (f"{agents_dir}/front.yaml:7: field 'routes.1.agent': unknown agent "
                          "'nobody' (known: desk, front)")


def test_a_duplicate_name_points_at_the_second_files_name(agents_dir: Path) -> None:
    write(agents_dir / "zz.yaml", "# a copy\n\nname: desk\nsystem_prompt: Hi.\n")
    error = catalog_error(agents_dir)
    assert str(error) == (f"{agents_dir}/zz.yaml:3: field 'name': agent 'desk' is already "
                          f"defined in {agents_dir}/desk.yaml")


def test_the_reference_agents_and_example_user_load() -> None:
    catalog = load_catalog(AGENTS_DIR)
    assert set(catalog.agents) >= {"assistant", "booking", "concierge", "router"}
    assert catalog.agents == load_agents(AGENTS_DIR)
    assert "demo-dana" in catalog.users
    agents, variables = catalog.for_user("demo-dana")
    assert variables["username"] == "Dana"
    assert agents["booking"].voice == "jf_alpha" and agents["assistant"].speed == 0.9


def test_overrides_apply_to_the_named_agent_and_the_wildcard(agents_dir: Path) -> None:
    write(agents_dir / "users" / "dana@example.com.yaml", """
        variables: {username: Dana, preferred_name: Dee}
        agents:
          desk:
            voice: jf_alpha
            speed: 1.1
            greeting: "Welcome back Dana."
            system_prompt_suffix: "Call the caller {{preferred_name}}."
          "*": {speed: 0.9, greeting: "Hi again."}
        """)
    catalog = load_catalog(agents_dir)
    base = dict(catalog.agents)
    agents, variables = catalog.for_user("dana@example.com")

    assert variables == {"username": "Dana", "preferred_name": "Dee"}
    desk, front = agents["desk"], agents["front"]
    assert (desk.voice, desk.speed, desk.greeting) == ("jf_alpha", 1.1, "Welcome back Dana.")
    assert desk.prompt(variables) == "You book things.\n\nCall the caller Dee.\n"
    assert desk.tools == base["desk"].tools == ("book_appointment",)
    # The wildcard fills what the agent's own entry leaves unset.
    assert (front.voice, front.speed, front.greeting) == ("af_heart", 0.9, "Hi again.")
    assert front.system_prompt == base["front"].system_prompt
    assert front.routes == base["front"].routes

    # The request's variables win over the user's.
    merged = {**variables, "username": "Daniela"}
    assert front.prompt(merged) == "You are the front desk. Caller: Daniela.\n"

    # The base agents are shared, frozen and unchanged.
    assert base["desk"].voice == "" and base["desk"].speed == 1.0
    assert base["desk"].system_prompt == "You book things."
    with pytest.raises(pydantic.ValidationError):
        base["desk"].speed = 2.0  # type: ignore[misc]  # frozen: assigning must fail
    with pytest.raises(pydantic.ValidationError):
        desk.speed = 2.0  # type: ignore[misc]  # frozen: assigning must fail
    assert catalog.for_user("dana@example.com")[0]["desk"] is desk

    # Changing the returned dicts does not change the catalog.
    agents.clear()
    variables.clear()
    assert catalog.for_user("dana@example.com")[1]["username"] == "Dana"


def test_other_users_get_the_agents_as_defined(agents_dir: Path) -> None:
    write(agents_dir / "users" / "dana.yaml", "agents:\n  '*': {speed: 0.5}\n")
    write(agents_dir / "users" / "empty.yaml", "")
    catalog = load_catalog(agents_dir)
    for user_id in ("", "someone-else", "empty"):
        agents, variables = catalog.for_user(user_id)
        assert agents == dict(catalog.agents) and variables == {}
        assert all(agents[n] is catalog.agents[n] for n in agents)
    assert catalog.for_user("dana")[0]["front"].speed == 0.5


@pytest.mark.parametrize("user_id", ["../etc/passwd", "a b", "x" * 129, "dana/../bob", "ü"])
def test_an_unsafe_user_id_is_refused_naming_the_field(user_id: str) -> None:
    catalog = AgentCatalog(load_agents(AGENTS_DIR))
    with pytest.raises(UserIdError, match=r"^user_id: ") as caught:
        catalog.for_user(user_id)
    assert caught.value.field == "user_id"


@pytest.mark.parametrize(("text", "expected"), [
    ("agents:\n  desk:\n    voice: x\n    tools: [cancel_appointment]\n",
     "u.yaml:4: field 'agents.desk.tools': Extra inputs are not permitted"),
    ("agents:\n  desk:\n    system_prompt: You obey me.\n",
     "u.yaml:3: field 'agents.desk.system_prompt': Extra inputs are not permitted"),
    ("variables: {username: Dana}\nagents:\n  desk:\n    speed: 9\n",
     "u.yaml:4: field 'agents.desk.speed': Input should be less than or equal to 4"),
    ("agents:\n  '*':\n    speed: -1\n",
     "u.yaml:3: field 'agents.*.speed': Input should be greater than 0"),
    ("agents:\n  desk: {voice: x}\n  nobody:\n    voice: y\n",
     "u.yaml:3: field 'agents.nobody': unknown agent 'nobody' (known: desk, front, or '*' "
     "for all)"),
    ("variables:\n  username: Dana\n  age: 42\n",
     "u.yaml:3: field 'variables.age': Input should be a valid string"),
    ("variables:\n  bad-name: x\n",
     "u.yaml:2: field 'variables.bad-name.[key]': String should match pattern"),
    ("nickname: Dee\n", "u.yaml:1: field 'nickname': Extra inputs are not permitted"),
    ("agents:\n  desk: {voice: x\n", "u.yaml:3: invalid YAML"),
])
def test_a_bad_user_file_names_file_line_and_field(
        agents_dir: Path, text: str, expected: str) -> None:
    write(agents_dir / "users" / "u.yaml", text)
    error = catalog_error(agents_dir)
    assert str(error).startswith(f"{agents_dir}/users/{expected}")
    assert len(error.problems) == 1  # a bad '*' value is reported once, not per agent


def test_a_user_file_with_an_unsafe_name_is_refused(agents_dir: Path) -> None:
    write(agents_dir / "users" / "bad name.yaml", "variables: {username: x}\n")
    error = catalog_error(agents_dir)
    assert str(error).startswith(f"{agents_dir}/users/bad name.yaml:1: file name 'bad name'")
