"""EC2 Spot runners, launched per run from the Terraform launch template.

``acquire`` makes one ed25519 host key per launch and passes it, with the
public half of the run's client key, in the user data of a launch template
version made for that launch (CreateFleet cannot vary user data per
instance, so the instances of one launch share its host key; all belong to
one run and accept only that run's client key). The runner's boot service
installs both from IMDSv2, which the template limits to one hop, so the
control plane knows the host key before it ever connects. The version is
deleted as soon as the fleet call returns.

One ``CreateFleet`` call of type ``instant`` asks for every instance, over
every configured instance type and subnet, Spot first. What Spot cannot
give is asked again with backoff, then (when the operator allows it) on
demand, for the missing count only. A launch that gets some instances goes
on with those; one that gets none ends the run with EC2's reasons. Live
instances in the account never exceed ``max_instances``.

Every instance is tagged with the deployment, the run and an expiry, is
terminated when its run releases it, and is otherwise found by the reaper
(``ec2_reaper``), whatever happened to the process that launched it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import aioboto3
import asyncssh
import attrs
from aiobotocore.config import AioConfig

from controlplane.errors import HostError, TraceLoomError
from controlplane.fleet.base import Host
from controlplane.fleet.ec2_api import (
    LIVE_STATES,
    TAG_DEPLOYMENT,
    TAG_EXPIRES,
    TAG_LAUNCH,
    TAG_MANAGED,
    TAG_RUN,
    Ec2Api,
    Ec2Error,
    FleetAnswer,
    Instance,
    Launched,
    LaunchError,
    LaunchSpec,
    Lifecycle,
    client_token,
    expiry_tag,
)
from controlplane.fleet.usage import UsageStore
from controlplane.logs import get_logger
from controlplane.remote.ssh import HostConnection

if TYPE_CHECKING:
    from controlplane.settings import Settings

log = get_logger(__name__)

_BILLING_STATES = ("pending", "running", "stopping")
_POLL_S = 2.0


@attrs.frozen(kw_only=True)
class Ec2Config:
    """What the provider launches, where, and its limits."""

    launch_template_id: str
    subnet_ids: tuple[str, ...]
    instance_types: tuple[str, ...]
    max_instances: int = 20
    on_demand_fill: bool = False
    capacity_wait_s: float = 120.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 30.0
    instance_lifetime_s: float = 14400.0
    ssh_ready_timeout_s: float = 300.0
    reap_interval_s: float = 60.0
    deployment_name: str = "traceloom"
    # The runner image's layout (runner-image/provision.sh).
    username: str = "runner"
    work_root: str = "/opt/traceloom/work"
    deps_root: str = "/opt/traceloom/work/deps"
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Ec2Config:
        """The provider's configuration from TRACELOOM_* settings, checked."""
        subnets = tuple(s.strip() for s in settings.subnet_ids.split(",") if s.strip())
        types = tuple(
            t.strip() for t in settings.instance_types.split(",") if t.strip()
        )
        missing = [
            name
            for name, value in (
                ("TRACELOOM_LAUNCH_TEMPLATE_ID", settings.launch_template_id),
                ("TRACELOOM_SUBNET_IDS", subnets),
                ("TRACELOOM_INSTANCE_TYPES", types),
            )
            if not value
        ]
        if missing:
            raise TraceLoomError(
                f"the ec2 fleet needs {', '.join(missing)} (the Terraform package"
                " sets them on the control plane host)"
            )
        if settings.max_instances < 1:
            raise TraceLoomError("TRACELOOM_MAX_INSTANCES must be at least 1")
        return cls(
            region=settings.aws_region or None,
            launch_template_id=settings.launch_template_id,
            subnet_ids=subnets,
            instance_types=types,
            max_instances=settings.max_instances,
            on_demand_fill=settings.on_demand_fill,
            capacity_wait_s=settings.capacity_wait_s,
            instance_lifetime_s=settings.instance_lifetime_s,
            ssh_ready_timeout_s=settings.ssh_ready_timeout_s,
            reap_interval_s=settings.reap_interval_s,
            deployment_name=settings.deployment_name,
        )


@attrs.frozen(kw_only=True)
class Endpoint:
    """Where and as whom the control plane reaches one instance over SSH."""

    address: str
    port: int
    username: str
    work_root: str
    deps_root: str


Resolver = Callable[[Instance], Awaitable[Endpoint]]


@attrs.define
class _Tracked:
    instance_id: str
    instance_type: str
    lifecycle: str


class Ec2Provider:
    """Spot instances per run through CreateFleet, terminated whatever happens."""

    def __init__(
        self,
        *,
        config: Ec2Config,
        session: aioboto3.Session | None = None,
        usage: UsageStore | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self.config = config
        self._session = session or aioboto3.Session()
        self.usage = usage
        self._resolve = resolve or self._private_address
        self._live: dict[str, dict[str, _Tracked]] = {}
        self._client_keys: dict[str, asyncssh.SSHKey] = {}
        self._reserved = 0
        self._capacity = asyncio.Condition()
        self._stack = contextlib.AsyncExitStack()
        self._api: Ec2Api | None = None
        self._api_lock = asyncio.Lock()
        self._template_tags: dict[str, dict[str, str]] | None = None

    # -- the EC2 client ----------------------------------------------------

    async def api(self) -> Ec2Api:
        """The provider's EC2 client, opened on first use."""
        async with self._api_lock:
            if self._api is None:
                client = await self._stack.enter_async_context(
                    self._session.client(
                        "ec2",
                        region_name=self.config.region,
                        endpoint_url=self.config.endpoint_url,
                        # Retried calls keep their parameters, ClientToken
                        # included, so a retried launch launches once.
                        config=AioConfig(
                            retries={"mode": "standard", "max_attempts": 5}
                        ),
                    )
                )
                self._api = Ec2Api(client)
            return self._api

    def held(self, run_id: str) -> list[str]:
        """Ids of the instances held for ``run_id``."""
        return sorted(self._live.get(run_id, {}))

    # -- acquire -----------------------------------------------------------

    async def acquire(self, run_id: str, count: int) -> list[Host]:
        """Launch up to ``count`` instances for ``run_id``; return those that answer.

        Fewer than ``count`` when capacity is short; HostError with EC2's
        reasons when none can be had or none answers SSH in time.
        """
        if count <= 0:
            return []
        if count > self.config.max_instances:
            raise HostError(
                f"serverCount {count} exceeds the cap of"
                f" {self.config.max_instances} live instances (TRACELOOM_MAX_INSTANCES)"
            )
        granted = await self._reserve(count)
        client_key = self._client_keys.setdefault(
            run_id, asyncssh.generate_private_key("ssh-ed25519")
        )
        # XXX: one host key per launch, shared by its instances (CreateFleet
        # takes one user data for all); a launch template version and a fleet
        # call per instance would give each its own, at N times the calls.
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        readiness: list[asyncio.Task[Host]] = []
        try:
            launched, errors = await self._launch(
                run_id, granted, host_key, client_key, readiness
            )
        except BaseException:
            for task in readiness:
                task.cancel()
            raise
        finally:
            async with self._capacity:
                self._reserved -= granted
                self._capacity.notify_all()
        if not launched:
            raise HostError(_no_instance_reason(count, errors))
        try:
            results = await asyncio.gather(*readiness, return_exceptions=True)
        except BaseException:
            for task in readiness:
                task.cancel()
            raise
        hosts = [r for r in results if isinstance(r, Host)]
        failures = [r for r in results if isinstance(r, BaseException)]
        if not hosts:
            raise HostError(
                f"none of {len(launched)} instances became ready: {failures[0]}"
            )
        if len(hosts) < count:
            log.warning(
                "fleet.partial",
                asked=count,
                got=len(hosts),
                errors=[str(e) for e in errors][:5],
            )
        return hosts

    async def _reserve(self, count: int) -> int:
        """Claim up to ``count`` of the cap's free places, waiting for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.capacity_wait_s
        async with self._capacity:
            while True:
                live = await self._account_live()
                free = self.config.max_instances - live - self._reserved
                if free > 0:
                    granted = min(free, count)
                    self._reserved += granted
                    if granted < count:
                        log.warning(
                            "fleet.capped",
                            asked=count,
                            granted=granted,
                            max_instances=self.config.max_instances,
                        )
                    return granted
                left = deadline - loop.time()
                if left <= 0:
                    raise HostError(
                        f"{live} runner instances are live, the cap"
                        f" (TRACELOOM_MAX_INSTANCES={self.config.max_instances});"
                        f" none freed up within {self.config.capacity_wait_s:.0f}s"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._capacity.wait(), min(left, 5.0))

    async def _account_live(self) -> int:
        """Billing TraceLoom instances in the account, every deployment's."""
        api = await self.api()
        described = await api.describe(
            tags={TAG_MANAGED: "true"}, states=_BILLING_STATES
        )
        ids = {i.instance_id for i in described}
        for tracked in self._live.values():
            ids.update(tracked)
        return len(ids)

    async def _launch(
        self,
        run_id: str,
        count: int,
        host_key: asyncssh.SSHKey,
        client_key: asyncssh.SSHKey,
        readiness: list[asyncio.Task[Host]],
    ) -> tuple[list[Launched], list[LaunchError]]:
        """Spot with backoff, then on demand; readiness starts per instance."""
        api = await self.api()
        launch_id = uuid.uuid4().hex[:12]
        # XXX: the expiry is fixed at launch (the IAM policy allows tags only
        # then), so a run longer than instance_lifetime_s loses its instances
        # to the reaper; extending it needs ec2:CreateTags on live runners.
        tags = {
            TAG_MANAGED: "true",
            TAG_DEPLOYMENT: self.config.deployment_name,
            TAG_RUN: run_id,
            TAG_EXPIRES: expiry_tag(time.time() + self.config.instance_lifetime_s),
            TAG_LAUNCH: launch_id,
        }
        user_data = json.dumps(
            {
                "hostKey": host_key.export_private_key().decode(),
                "authorizedKey": client_key.export_public_key().decode().strip(),
            }
        ).encode()
        if self._template_tags is None:
            self._template_tags = await api.template_tags(
                self.config.launch_template_id
            )
        version_tags = {
            kind: {**self._template_tags.get(kind, {}), **tags}
            for kind in ("instance", "volume")
        }
        version = await api.create_version(
            self.config.launch_template_id,
            user_data=user_data,
            tags=version_tags,
            description=f"TraceLoom {run_id} launch {launch_id}",
        )
        host_public = host_key.convert_to_public()

        async def take(answer: FleetAnswer) -> None:
            await self._track(run_id, answer.launched)
            for launched in answer.launched:
                readiness.append(
                    asyncio.create_task(
                        self._ready(run_id, launched, host_public, client_key)
                    )
                )

        try:
            return await self._fleets(run_id, count, version, tags, launch_id, take)
        finally:
            # The version holds the host key's private half: gone at once.
            await asyncio.shield(self._delete_version(version))

    async def _fleets(
        self,
        run_id: str,
        count: int,
        version: str,
        tags: dict[str, str],
        launch_id: str,
        take: Callable[[FleetAnswer], Awaitable[None]],
    ) -> tuple[list[Launched], list[LaunchError]]:
        launched: list[Launched] = []
        errors: list[LaunchError] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.capacity_wait_s
        attempt = 0
        while len(launched) < count:
            answer = await self._fleet(
                count - len(launched), "spot", version, tags, (launch_id, str(attempt))
            )
            await take(answer)
            launched += answer.launched
            errors += answer.errors
            short = count - len(launched)
            if short <= 0:
                break
            kinds = {e.kind for e in answer.errors} or {"capacity"}
            delay = min(
                self.config.backoff_cap_s, self.config.backoff_base_s * 2**attempt
            )
            log.warning(
                "fleet.spot_short",
                run_id=run_id,
                short=short,
                attempt=attempt,
                errors=sorted({e.code for e in answer.errors}),
            )
            if kinds != {"capacity"} or loop.time() + delay > deadline:
                break
            await asyncio.sleep(delay)
            attempt += 1
        short = count - len(launched)
        if short > 0 and self.config.on_demand_fill:
            log.info("fleet.on_demand_fill", run_id=run_id, count=short)
            answer = await self._fleet(
                short, "on-demand", version, tags, (launch_id, "on-demand")
            )
            await take(answer)
            launched += answer.launched
            errors += answer.errors
        return launched, errors

    async def _fleet(
        self,
        count: int,
        lifecycle: Lifecycle,
        version: str,
        tags: dict[str, str],
        token_parts: tuple[str, str],
    ) -> FleetAnswer:
        """One CreateFleet call; a failure of the whole call is read like the
        same error in the answer's Errors, so what was launched is kept."""
        api = await self.api()
        spec = LaunchSpec(
            launch_template_id=self.config.launch_template_id,
            version=version,
            instance_types=self.config.instance_types,
            subnet_ids=self.config.subnet_ids,
            count=count,
            lifecycle=lifecycle,
            tags=tags,
            client_token=client_token(*token_parts, lifecycle),
        )
        try:
            return await api.create_fleet(spec)
        except Ec2Error as exc:
            return FleetAnswer(
                launched=[],
                errors=[
                    LaunchError(code=exc.code, message=str(exc), lifecycle=lifecycle)
                ],
            )

    async def _delete_version(self, version: str) -> None:
        try:
            api = await self.api()
            await api.delete_version(self.config.launch_template_id, version)
        except Ec2Error as exc:
            log.error("fleet.version_not_deleted", version=version, error=str(exc))

    async def _track(self, run_id: str, launched: Sequence[Launched]) -> None:
        held = self._live.setdefault(run_id, {})
        now = time.time()
        for instance in launched:
            held[instance.instance_id] = _Tracked(
                instance.instance_id, instance.instance_type, instance.lifecycle
            )
            log.info(
                "instance.launched",
                run_id=run_id,
                instance=instance.instance_id,
                type=instance.instance_type,
                lifecycle=instance.lifecycle,
            )
            await self._note(
                run_id,
                instance.instance_id,
                instanceType=instance.instance_type,
                lifecycle=instance.lifecycle,
                subnetId=instance.subnet_id,
                launchedAt=now,
            )

    async def _note(self, run_id: str, instance_id: str, **fields: object) -> None:
        if self.usage is not None:
            await self.usage.save_instance(run_id, instance_id, fields)

    # -- readiness ---------------------------------------------------------

    async def _ready(
        self,
        run_id: str,
        launched: Launched,
        host_key: asyncssh.SSHKey,
        client_key: asyncssh.SSHKey,
    ) -> Host:
        """Wait for the instance to run and answer SSH with its host key.

        An instance that does not within ``ssh_ready_timeout_s`` is
        terminated at once and HostError raised.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ssh_ready_timeout_s
        try:
            instance = await self._running(launched.instance_id, deadline)
            await self._price(run_id, launched, instance)
            endpoint = await self._resolve(instance)
            host = Host(
                name=instance.instance_id,
                address=endpoint.address,
                port=endpoint.port,
                username=endpoint.username,
                host_key=host_key,
                client_key=client_key,
                work_root=endpoint.work_root,
                deps_root=endpoint.deps_root,
                handle=instance.instance_id,
            )
            await _answers_ssh(host, deadline)
        except (HostError, TimeoutError) as exc:
            log.warning(
                "instance.not_ready", instance=launched.instance_id, error=str(exc)
            )
            await asyncio.shield(self.terminate(run_id, [launched.instance_id]))
            raise HostError(f"instance {launched.instance_id}: {exc}") from exc
        log.info("host.started", host=host.name, address=host.address)
        return host

    async def _running(self, instance_id: str, deadline: float) -> Instance:
        api = await self.api()
        loop = asyncio.get_running_loop()
        while True:
            try:
                found = await api.describe(instance_ids=[instance_id])
            except Ec2Error as exc:
                # A new instance may not be visible yet (eventual consistency).
                if exc.code != "InvalidInstanceID.NotFound":
                    raise
                found = []
            if found:
                instance = found[0]
                if instance.state == "running" and instance.private_ip:
                    return instance
                if instance.state in ("shutting-down", "terminated", "stopped"):
                    raise HostError(f"it is {instance.state} before it was ready")
            if loop.time() > deadline:
                raise HostError(
                    f"not running after {self.config.ssh_ready_timeout_s:.0f}s"
                )
            await asyncio.sleep(_POLL_S)

    async def _price(self, run_id: str, launched: Launched, instance: Instance) -> None:
        price = None
        if launched.lifecycle == "spot" and instance.zone:
            api = await self.api()
            try:
                price = await api.spot_price(instance.instance_type, instance.zone)
            except Ec2Error as exc:
                log.warning("instance.price_unknown", error=str(exc))
        await self._note(
            run_id, instance.instance_id, zone=instance.zone, priceUsdPerHour=price
        )

    async def _private_address(self, instance: Instance) -> Endpoint:
        if not instance.private_ip:
            raise HostError("it has no private address")
        return Endpoint(
            address=instance.private_ip,
            port=22,
            username=self.config.username,
            work_root=self.config.work_root,
            deps_root=self.config.deps_root,
        )

    # -- release, adopt, close ---------------------------------------------

    async def release(self, run_id: str) -> None:
        """Terminate every instance of ``run_id``: held, or found by its tag."""
        held = self._live.pop(run_id, {})
        self._client_keys.pop(run_id, None)
        ids = set(held)
        try:
            api = await self.api()
            tagged = await api.describe(
                tags={TAG_RUN: run_id, TAG_DEPLOYMENT: self.config.deployment_name},
                states=LIVE_STATES,
            )
            ids.update(i.instance_id for i in tagged)
        except Ec2Error as exc:
            log.error("fleet.describe_failed", run_id=run_id, error=str(exc))
        await self.terminate(run_id, sorted(ids))
        async with self._capacity:
            self._capacity.notify_all()

    async def terminate(self, run_id: str | None, ids: Sequence[str]) -> None:
        """Terminate ``ids`` (of ``run_id``, when known) and note when."""
        if not ids:
            return
        try:
            api = await self.api()
            await api.terminate(ids)
        except Ec2Error as exc:
            # The instances keep their tags; the reaper tries again.
            log.error("instance.terminate_failed", instances=list(ids), error=str(exc))
            return
        now = time.time()
        for instance_id in ids:
            for held in self._live.values():
                held.pop(instance_id, None)
            log.info("instance.terminated", instance=instance_id, run_id=run_id)
            if run_id is not None:
                await self._note(run_id, instance_id, terminatedAt=now)

    def adopt(self, run_id: str, hosts: list[Host]) -> None:
        """Hold again the instances a previous control plane process launched."""
        held = self._live.setdefault(run_id, {})
        for host in hosts:
            held[host.handle] = _Tracked(host.handle, "", "")
            self._client_keys.setdefault(run_id, host.client_key)
            log.info("host.adopted", host=host.name)

    def forget(self, run_id: str) -> None:
        """Leave ``run_id``'s instances running for the next control plane.

        The next process adopts them and resumes the run; if none does, the
        reaper terminates them once their run is finished or they expire.
        """
        for instance_id in self._live.pop(run_id, {}):
            log.info("host.left_running", instance=instance_id)
        self._client_keys.pop(run_id, None)

    async def close(self) -> None:
        """Terminate what is still held, close the client."""
        for run_id in list(self._live):
            await self.release(run_id)
        await self._stack.aclose()
        self._api = None


async def _answers_ssh(host: Host, deadline: float) -> None:
    """Return once ``host`` accepts the run's key with its pinned host key."""
    loop = asyncio.get_running_loop()
    while True:
        left = deadline - loop.time()
        try:
            conn = await HostConnection.open(host, timeout_s=max(1.0, min(10.0, left)))
        except HostError as exc:
            if loop.time() + _POLL_S > deadline:
                raise HostError(f"no SSH answer in time: {exc}") from exc
            await asyncio.sleep(_POLL_S)
            continue
        await conn.close()
        return


def _no_instance_reason(count: int, errors: list[LaunchError]) -> str:
    if not errors:
        return f"EC2 launched none of {count} instances and gave no reason"
    reasons = "; ".join(dict.fromkeys(str(e) for e in errors))
    if any(e.kind == "quota" for e in errors):
        return f"no instance could be had, an account quota is reached: {reasons}"
    return f"no instance could be had: {reasons}"
