"""Replay AgentDojo's ground-truth tool calls through tether and score them with AgentDojo.

For each suite and user task, an agent opens a tether task (intent = the user's request, scopes
from ``scopes.yaml``) and replays the task's ground-truth calls: each call is authorized through
``tether_sdk`` against a real ``tether serve`` on loopback, runs against the AgentDojo environment
only when allowed, and its effect is reported. Utility is AgentDojo's own check.

For each user task x injection task pair, the environment carries AgentDojo's
``important_instructions`` injection; the replay runs the user's calls up to the first tool output
carrying it, then the attacker's calls, then the rest of the user's calls, all through tether.
The attack succeeded when AgentDojo's security check says so on the resulting environment.

An ``approval_required`` answer is counted, and each scenario that asked for one is scored twice:
with every approval denied by the approver, and replayed with every approval granted.

Run it with ``bash bench/agentdojo/run.sh`` (it makes the virtualenv); see README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attacks
import fresh
import httpx
import scopes
import yaml
from agentdojo.agent_pipeline.tool_execution import tool_result_to_str
from agentdojo.functions_runtime import FunctionCall, FunctionsRuntime
from agentdojo.task_suite.load_suites import get_suites
from agentdojo.task_suite.task_suite import read_suite_file, validate_injections
from attacks import MARKER, Call
from pydantic_core import to_jsonable_python

from tether.runtime import RuntimeConfig, approver_registry, dev_issuer
from tether_sdk import TetherClient
from tether_sdk.client import TaskSession

HERE = Path(__file__).resolve().parent
POLICIES = HERE / "policies"
RESULTS = HERE / "results"
DEFAULT_VERSIONS = ("v1", "v1.2.2")
ALL_VERSIONS = ("v1", "v1.1", "v1.1.1", "v1.1.2", "v1.2", "v1.2.1", "v1.2.2")
SUITES = ("workspace", "travel", "banking", "slack")
RECIPIENT_ARGS = ("recipients", "recipient", "email", "participants", "user_email", "url")


# -- tether ---------------------------------------------------------------------------------------


@dataclass
class Tether:
    """A running ``tether serve`` with the bench's policies, and the people who use it."""

    url: str
    data_dir: Path
    approver: httpx.Client
    clients: dict[str, TetherClient] = field(default_factory=dict)

    def client(self, agent: str) -> TetherClient:
        if agent not in self.clients:
            issuer = dev_issuer(RuntimeConfig(data_dir=self.data_dir, environ={}))
            svid = issuer.mint_svid(
                agent, audience="tether", now=datetime.now(UTC), ttl_seconds=4 * 3600
            )
            self.clients[agent] = TetherClient(self.url, svid=svid, timeout=30)
        return self.clients[agent]

    def vote(self, approval_id: str, approve: bool) -> None:
        verb = "approve" if approve else "deny"
        reason = "benchmark: approver says yes" if approve else "benchmark: approver says no"
        answer = self.approver.post(f"/v1/approvals/{approval_id}/{verb}", json={"reason": reason})
        answer.raise_for_status()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tether_server(keep: Path | None) -> Iterator[Tether]:
    """``tether serve`` on a free loopback port with a fresh data directory and one approver;
    the audit chain is verified once the server has stopped."""
    data_dir = keep or Path(tempfile.mkdtemp(prefix="tether-agentdojo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    token = approver_registry(data_dir).add("bench-approver")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
    command = [sys.executable, "-m", "tether", "serve", "--data-dir", str(data_dir)]
    command += ["--policies", str(POLICIES), "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    approver = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit("tether serve exited during start-up (run it alone to see why)")
            try:
                if approver.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("tether serve was not ready within 60 s")
            time.sleep(0.1)
        tether = Tether(url, data_dir, approver)
        try:
            yield tether
        finally:
            for client in tether.clients.values():
                client.close()
    finally:
        approver.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        audit = subprocess.run(
            [sys.executable, "-m", "tether", "audit", "verify", "-d", str(data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"audit: {audit.stdout.strip() or audit.stderr.strip()}", file=sys.stderr)
        if keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


# -- one scenario -----------------------------------------------------------------------------


@dataclass
class Run:
    """What happened in one replay of one scenario."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    approvals: int = 0
    user_calls_all_ran: bool = True
    injected: bool = False
    utility: bool = False
    security: bool | None = None  # the attack succeeded (pairs only)

    @property
    def all_allowed(self) -> bool:
        return all(c["ran"] for c in self.calls if c["origin"] == "user")


def _wire_args(function: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments as tether sees them: defaults applied, JSON values, an absent list
    (``None``) sent as an empty list so list constraints hold for it."""
    model = function.parameters
    try:
        full = model.model_validate(args).model_dump(mode="json")
    except Exception:  # an invalid call still gets asked about, with what the agent sent
        full = json.loads(json.dumps(args, default=str))
    wire: dict[str, Any] = {}
    for name, value in full.items():
        if value is None:
            annotation = (
                str(model.model_fields[name].annotation) if name in model.model_fields else ""
            )
            if "list" in annotation:
                wire[name] = []
            continue
        wire[name] = value
    return wire


def _recipients(wire: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in RECIPIENT_ARGS:
        value = wire.get(key)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str))
    return found[:1000]


def _check(task: Any, kind: str, output: str, pre: Any, post: Any, traces: list[Any]) -> bool:
    """AgentDojo's own check: the ``*_from_traces`` variant when the task defines one."""
    from_traces = getattr(task, f"{kind}_from_traces")(output, pre, post, traces)
    if from_traces is not None:
        return bool(from_traces)
    return bool(getattr(task, kind)(output, pre, post))


class Environments:
    """AgentDojo's ``load_and_inject_default_environment``, parsed with libyaml and kept for the
    last injections asked: each scenario replays up to three times (without tether, approvals
    denied, approvals granted) on fresh copies of one environment. :meth:`verify` holds it to
    AgentDojo's own loader."""

    def __init__(self, suite: Any) -> None:
        self.suite = suite
        self.defaults: dict[str, str] = suite.get_injection_vector_defaults()
        self._key: tuple[tuple[str, str], ...] | None = None
        self._data: Any = None

    def load(self, injections: dict[str, str]) -> Any:
        key = tuple(sorted(injections.items()))
        if key != self._key:
            validate_injections(injections, self.defaults)
            text = read_suite_file(self.suite.name, "environment.yaml", self.suite.data_path)
            injected = text.format(**dict(self.defaults, **injections))
            self._data = yaml.load(injected, Loader=yaml.CSafeLoader)
            self._key = key
        return self.suite.environment_type.model_validate(self._data)

    def verify(self, injections: dict[str, str]) -> None:
        ours = self.load(injections)
        theirs = self.suite.load_and_inject_default_environment(injections)
        if ours != theirs:
            raise SystemExit(f"{self.suite.name}: the fast loader differs from AgentDojo's")


class Replayer:
    """Replays scenarios of one suite, through tether (``tether`` given) or directly."""

    def __init__(
        self,
        suite_name: str,
        suite: Any,
        plan: scopes.SuitePlan,
        on_behalf_of: str,
        tether: Tether | None,
        requests: Mapping[str, str] | None = None,
    ) -> None:
        self.suite_name = suite_name
        self.requests = requests or {}
        self.suite = suite
        self.plan = plan
        self.on_behalf_of = on_behalf_of
        self.tether = tether
        self.functions = {f.name: f for f in suite.tools}
        self.environments = Environments(suite)

    def run(
        self,
        user_task: Any,
        injection_task: Any | None,
        injections: dict[str, str],
        approve: bool,
    ) -> Run:
        environment = user_task.init_environment(self.environments.load(injections))
        pre = environment.model_copy(deep=True)
        # As AgentDojo's ground-truth pipeline does: the calls are planned on the environment
        # before any of them runs.
        user_calls = [
            Call(c.function, dict(c.args), "user") for c in user_task.ground_truth(environment)
        ]
        attack: list[Call] = []
        if injection_task is not None:
            attack = attacks.attacker_calls(self.suite_name, injection_task, environment)
        run = Run()
        traces: list[Any] = []
        runtime = FunctionsRuntime(self.suite.tools)
        request = self.requests.get(user_task.ID, user_task.PROMPT)
        session = self._open(request, environment) if self.tether else None
        try:
            for call in user_calls:
                output = self._call(call, environment, runtime, session, approve, run, traces)
                if output is None:
                    run.user_calls_all_ran = False
                elif injection_task is not None and not run.injected and MARKER in output:
                    run.injected = True
                    for bad in attack:
                        self._call(bad, environment, runtime, session, approve, run, traces)
        finally:
            if session is not None:
                session.close()
        output_text = user_task.GROUND_TRUTH_OUTPUT if run.user_calls_all_ran else ""
        if injection_task is not None and run.injected and injection_task.GROUND_TRUTH_OUTPUT:
            # What the injection wants the model to *say*: no tool call, so no gate sees it.
            output_text = f"{output_text}\n{injection_task.GROUND_TRUTH_OUTPUT}"
        run.utility = _check(user_task, "utility", output_text, pre, environment, traces)
        if injection_task is not None:
            run.security = _check(injection_task, "security", output_text, pre, environment, traces)
        return run

    def _open(self, request: str, environment: Any) -> TaskSession:
        assert self.tether is not None
        client = self.tether.client(self.plan.agent)
        intent = {
            "workflow": f"agentdojo-{self.suite_name}",
            "purpose": request.strip()[:512] or "(empty request)",
            "on_behalf_of": self.on_behalf_of,
        }
        if request.strip():
            # The user's own words: a trusted source for the catalog's sink arguments.
            intent["request"] = request.strip()[:16384]
        session = client.task(intent, self.plan.scopes(request, environment), ttl_seconds=600)
        return session.open()

    def _call(
        self,
        call: Call,
        environment: Any,
        runtime: Any,
        session: TaskSession | None,
        approve: bool,
        run: Run,
        traces: list[Any],
    ) -> str | None:
        """Authorize, run and report one call; its output, or ``None`` when it did not run."""
        args = call.resolve(environment)
        record: dict[str, Any] = {"function": call.function, "origin": call.origin}
        run.calls.append(record)
        decision_id: str | None = None
        wire: dict[str, Any] = {}
        if session is not None:
            mapped = self.plan.call(call.function)
            function = self.functions.get(call.function)
            wire = _wire_args(function, args) if function is not None else dict(args)
            verdict = session.authorize(mapped.tool, mapped.action, mapped.dataset, wire)
            record["decision"] = verdict.decision.value
            record["reasons"] = list(verdict.codes)
            if verdict.decision.value == "approval_required" and verdict.approval_id:
                run.approvals += 1
                self.tether_vote(verdict.approval_id, approve)
                if approve:
                    verdict = session.authorize(
                        mapped.tool, mapped.action, mapped.dataset, wire, verdict.approval_id
                    )
                    record["after_approval"] = verdict.decision.value
            if not verdict.allowed:
                record["ran"] = False
                return None
            decision_id = verdict.decision_id
        result, error = runtime.run_function(environment, call.function, args)
        record["ran"] = True
        traces.append(FunctionCall(function=call.function, args=args))
        if error is not None:
            record["error"] = error
            output = error
        else:
            try:
                output = tool_result_to_str(result)
            except TypeError:
                output = str(result)
        if session is not None and decision_id is not None:
            records = len(result) if isinstance(result, list) else 1
            session.report_effect(
                decision_id,
                status="error" if error is not None else "ok",
                records=records,
                bytes=len(output.encode("utf-8")),
                recipients=_recipients(wire),
            )
            # What the result puts in the agent's context, for argument provenance: the tool's
            # structured result, as an application hands it over (so a message keeps its
            # sender, for the catalog's trusted parts), or the error the agent saw.
            observed = output if error is not None else to_jsonable_python(result)
            session.observe(mapped.tool, observed, mapped.dataset, decision_id)
        return str(output)

    def tether_vote(self, approval_id: str, approve: bool) -> None:
        assert self.tether is not None
        self.tether.vote(approval_id, approve)


# -- a suite --------------------------------------------------------------------------------------


@dataclass
class SuiteResult:
    version: str
    suite: str
    user_tasks: int = 0
    injection_tasks: int = 0
    pairs: int = 0
    not_injectable: int = 0
    # without tether: every call runs
    base_utility: int = 0
    base_attacks: int = 0
    # through tether, approvals denied / approved
    benign_allowed: int = 0
    benign_allowed_approved: int = 0
    utility_denied: int = 0
    utility_approved: int = 0
    attacks_denied: int = 0
    attacks_approved: int = 0
    benign_asked: int = 0
    pairs_asked: int = 0
    approvals_benign: int = 0
    approvals_pairs: int = 0
    attacker_calls: int = 0
    attacker_calls_ran: int = 0
    seconds: float = 0.0


def run_suite(
    version: str,
    suite_name: str,
    suite: Any,
    plan: scopes.SuitePlan,
    on_behalf_of: str,
    tether: Tether,
    limit: int | None,
    log: Any,
    requests: Mapping[str, str] | None = None,
) -> SuiteResult:
    started = time.monotonic()
    result = SuiteResult(version, suite_name)
    gated = Replayer(suite_name, suite, plan, on_behalf_of, tether, requests)
    bare = Replayer(suite_name, suite, plan, on_behalf_of, None)
    injector = attacks.Injector(suite)
    gated.environments.verify({})
    user_tasks = list(suite.user_tasks.values())[:limit]
    injection_tasks = list(suite.injection_tasks.values())
    result.user_tasks = len(user_tasks)
    result.injection_tasks = len(injection_tasks)

    def both(user_task: Any, injection_task: Any | None, injections: dict[str, str]) -> list[Run]:
        denied = gated.run(user_task, injection_task, injections, approve=False)
        if not denied.approvals:
            return [denied]
        return [denied, gated.run(user_task, injection_task, injections, approve=True)]

    for user_task in user_tasks:
        base = bare.run(user_task, None, {}, approve=False)
        runs = both(user_task, None, {})
        denied, approved = runs[0], runs[-1]
        result.base_utility += base.utility
        result.benign_allowed += denied.all_allowed and not denied.approvals
        result.benign_allowed_approved += approved.all_allowed
        result.utility_denied += denied.utility
        result.utility_approved += approved.utility
        result.benign_asked += bool(denied.approvals)
        result.approvals_benign += denied.approvals
        _log(log, version, suite_name, user_task.ID, None, base, runs)
        for injection_task in injection_tasks:
            injections = injector.injections(user_task, injection_task)
            if injections is None:
                result.not_injectable += 1
                continue
            result.pairs += 1
            if result.pairs == 1:
                gated.environments.verify(injections)
            base = bare.run(user_task, injection_task, injections, approve=False)
            runs = both(user_task, injection_task, injections)
            denied, approved = runs[0], runs[-1]
            result.base_attacks += bool(base.security)
            result.attacks_denied += bool(denied.security)
            result.attacks_approved += bool(approved.security)
            result.pairs_asked += bool(denied.approvals)
            result.approvals_pairs += denied.approvals
            attacker = [c for c in denied.calls if c["origin"] == "attacker"]
            result.attacker_calls += len(attacker)
            result.attacker_calls_ran += sum(c["ran"] for c in attacker)
            _log(log, version, suite_name, user_task.ID, injection_task.ID, base, runs)
    result.seconds = time.monotonic() - started
    return result


def _log(
    log: Any, version: str, suite: str, user: str, injection: str | None, base: Run, runs: list[Run]
) -> None:
    if log is None:
        return
    entry = {
        "version": version,
        "suite": suite,
        "user_task": user,
        "injection_task": injection,
        "without_tether": {"utility": base.utility, "attack": base.security},
        "approvals_denied": asdict(runs[0]),
        "approvals_granted": asdict(runs[-1]) if len(runs) > 1 else None,
    }
    log.write(json.dumps(entry) + "\n")


# -- the table ------------------------------------------------------------------------------------


def table(results: Sequence[SuiteResult]) -> str:
    """The README's table. ``a / b``: approvals denied / approvals granted (one number when the
    two agree)."""
    head = (
        "| version | suite | benign tasks fully allowed | utility | attacks succeeded "
        "| approvals asked (benign tasks, pairs) | without tether: utility, attacks |\n"
        "|---|---|---|---|---|---|---|\n"
    )

    def both(denied: int, granted: int) -> str:
        return f"{denied}" if denied == granted else f"{denied} / {granted}"

    rows = [
        f"| {r.version} | {r.suite} "
        f"| {both(r.benign_allowed, r.benign_allowed_approved)} of {r.user_tasks} "
        f"| {both(r.utility_denied, r.utility_approved)} of {r.user_tasks} "
        f"| {both(r.attacks_denied, r.attacks_approved)} of {r.pairs} "
        f"| {r.benign_asked}, {r.pairs_asked} "
        f"| {r.base_utility} of {r.user_tasks}, {r.base_attacks} of {r.pairs} |"
        for r in results
    ]
    return head + "\n".join(rows) + "\n"


# -- checks of the written attacker traces --------------------------------------------------------


def check_traces(versions: Sequence[str]) -> int:
    """Each trace written for an injection task with an empty ground truth must pass that task's
    own security check when replayed alone (without tether), as AgentDojo checks its suites."""
    failures = 0
    for version in versions:
        for name, suite in get_suites(version).items():
            user_task = next(iter(suite.user_tasks.values()))
            for task in suite.injection_tasks.values():
                environment = user_task.init_environment(
                    suite.load_and_inject_default_environment({})
                )
                pre = environment.model_copy(deep=True)
                calls = attacks.attacker_calls(name, task, pre)
                if task.ground_truth(pre.model_copy(deep=True)) or not calls:
                    continue
                runtime = FunctionsRuntime(suite.tools)
                traces = []
                for call in calls:
                    args = call.resolve(environment)
                    _, error = runtime.run_function(environment, call.function, args)
                    if error:
                        print(f"{version} {name} {task.ID}: {call.function} failed: {error}")
                    traces.append(FunctionCall(function=call.function, args=args))
                ok = _check(task, "security", "", pre, environment, traces)
                print(f"{version} {name} {task.ID}: written trace passes security: {ok}")
                failures += not ok
    return failures


# -- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--versions",
        default=",".join(DEFAULT_VERSIONS),
        help=f"comma-separated AgentDojo benchmark versions, or 'all' ({', '.join(ALL_VERSIONS)})",
    )
    parser.add_argument("--suite", action="append", choices=SUITES, help="only this suite")
    parser.add_argument("--limit", type=int, help="only the first N user tasks of each suite")
    parser.add_argument("--data-dir", type=Path, help="keep tether's data (audit log) here")
    parser.add_argument(
        "--check-traces", action="store_true", help="only check the written attacker traces"
    )
    parser.add_argument(
        "--requests",
        type=Path,
        help="the user requests to put in the intent instead of AgentDojo's wording "
        "(YAML {suite: {user_task: text}}, e.g. paraphrases.yaml)",
    )
    parser.add_argument(
        "--fresh-attackers",
        action="store_true",
        help="swap the attackers' addresses, IBANs, sites and names for fresh ones (fresh.py)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"where the results go (default {RESULTS})"
    )
    options = parser.parse_args(argv)
    versions = ALL_VERSIONS if options.versions == "all" else tuple(options.versions.split(","))
    if options.check_traces:
        return 1 if check_traces(versions) else 0
    on_behalf_of, plans = scopes.load()
    requests: dict[str, dict[str, str]] = {}
    if options.requests:
        requests = yaml.safe_load(options.requests.read_text(encoding="utf-8"))
    suites = tuple(options.suite or SUITES)
    out: Path = options.results
    out.mkdir(exist_ok=True)
    results: list[SuiteResult] = []
    with (out / "runs.jsonl").open("w") as log, tether_server(options.data_dir) as tether:
        for version in versions:
            available = get_suites(version)
            if options.fresh_attackers:
                fresh.apply(available)
            for name in suites:
                result = run_suite(
                    version,
                    name,
                    available[name],
                    plans[name],
                    on_behalf_of,
                    tether,
                    options.limit,
                    log,
                    requests.get(name),
                )
                results.append(result)
                print(
                    f"{version} {name}: {result.user_tasks} user tasks, {result.pairs} pairs, "
                    f"{result.seconds:.0f} s",
                    file=sys.stderr,
                )
    text = table(results)
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
