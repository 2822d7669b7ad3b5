"""The engine and the unit of work, the one place that scopes every query to a tenant.

Two walls keep practices apart. The ORM hook below adds `tenant_id = :tenant` to every query and stamps every new
row. Under it, on PostgreSQL, row-level security (migration 0015): the app's role sees and writes only the rows of
the transaction's `app.tenant_id`, which each unit of work sets when its transaction begins; with none set it sees
nothing. Work that truly spans practices opens `UnitOfWork(system=True)`: it runs on the system engine, a role
with BYPASSRLS (SYSTEM_DATABASE_URL), never on the app's.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState, with_loader_criteria
from sqlalchemy.sql import util as sql_util
from sqlmodel import Session, col

from backend.errors import TenantScopeError
from backend.settings import get_settings
from backend.tenancy.context import Actor
from backend.tenancy.models import TenantMixin

logger = logging.getLogger(__name__)

_TENANT_KEY = "tenant_id"
_UNSCOPED_KEY = "unscoped"
# Set around work that only reads (live page reloads): on SQLite its transactions begin DEFERRED, without the
# write lock, so readers never queue behind (or block) the one writer. PostgreSQL is unaffected.
_READS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("waitwell_reads_only", default=False)
# The practice of the session whose transaction is starting in this context: the PostgreSQL connection checked out for
# it is set to that practice by its checkout check (one round trip that also proves the connection alive), so the
# transaction needs no statement of its own for it.
_CHECKOUT_TENANT: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar("waitwell_tenant", default=None)
# Where a pooled connection records the practice its session-level `app.tenant_id` was set to at checkout.
_CONNECTION_TENANT = "waitwell.app_tenant_id"


@contextlib.contextmanager
def reads_only() -> Iterator[None]:
    """Mark the units of work opened inside as read-only (SQLite: no write lock is taken for them)."""
    token = _READS_ONLY.set(True)
    try:
        yield
    finally:
        _READS_ONLY.reset(token)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine with the settings each dialect needs."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, echo=echo, hide_parameters=True, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Foreign keys are off by default in SQLite; WAL lets readers run beside the writer.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # pysqlite's own transaction handling defers BEGIN; we issue BEGIN IMMEDIATE ourselves.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            # One writer at a time, taken at the start: SQLite's equivalent of our PostgreSQL locks. Reads only
            # (reads_only) begin deferred: WAL gives them a snapshot beside the writer, without its lock.
            conn.exec_driver_sql("BEGIN" if _READS_ONLY.get() else "BEGIN IMMEDIATE")

        return engine
    # hide_parameters: no SQL parameter (a patient's name, reason, e-mail) in any error message or log line.
    # connect_timeout and pool_timeout bound the wait when the database is down or saturated (then 503).
    engine = sa.create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )
    event.listen(engine, "checkout", _check_out)
    return engine


def _check_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """The pre-ping of every checkout, doing useful work: set the connection's `app.tenant_id` to the practice of the
    unit of work in this context ('' outside one: row-level security then shows nothing). A connection that fails it
    is dropped and the pool tries a fresh one (DisconnectionError), as pool_pre_ping would."""
    tenant = _CHECKOUT_TENANT.get()
    value = str(tenant) if tenant is not None else ""
    record.info.pop(_CONNECTION_TENANT, None)
    try:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT set_config('app.tenant_id', %s, false)", (value,))
        finally:
            dbapi_connection.autocommit = autocommit
    except Exception as exc:
        raise sa.exc.DisconnectionError("connection failed its checkout check") from exc
    record.info[_CONNECTION_TENANT] = value


@lru_cache
def get_engine() -> Engine:
    """Return the process-wide engine for the configured database (the app's role)."""
    settings = get_settings()
    return make_engine(settings.database_url, echo=settings.sql_echo)


def get_system_engine() -> Engine:
    """The engine of the system scope (UnitOfWork(system=True)): SYSTEM_DATABASE_URL, a role that bypasses row-level
    security. Unset (SQLite, or one PostgreSQL role for everything): the app's engine."""
    settings = get_settings()
    if not settings.system_database_url or settings.system_database_url == settings.database_url:
        return get_engine()
    return _system_engine(settings.system_database_url, settings.sql_echo)


@lru_cache
def _system_engine(url: str, echo: bool) -> Engine:
    return make_engine(url, echo=echo)


@event.listens_for(Session, "after_transaction_create")
def _checkout_for_tenant(session: Session, transaction: Any) -> None:
    """A session's transaction begins here, in the thread that runs it, right before its connection is checked out;
    `_set_tenant_setting` (after the checkout) and the transaction's end clear it again, so it never outlives that."""
    if transaction.parent is None:
        _CHECKOUT_TENANT.set(session.info.get(_TENANT_KEY))


@event.listens_for(Session, "after_transaction_end")
def _checkout_done(_session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        _CHECKOUT_TENANT.set(None)


@event.listens_for(Session, "after_begin")
def _set_tenant_setting(session: Session, _transaction: Any, connection: sa.Connection) -> None:
    """PostgreSQL: tell row-level security whose rows this transaction may see (until it ends: is_local), unless the
    connection's checkout already set it to this practice (the usual case: `_check_out`)."""
    _CHECKOUT_TENANT.set(None)
    tenant_id = session.info.get(_TENANT_KEY)
    if tenant_id is None or connection.dialect.name != "postgresql":
        return
    if connection.connection.info.get(_CONNECTION_TENANT) == str(tenant_id):
        return
    connection.exec_driver_sql("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))


@event.listens_for(Session, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    """Add `tenant_id = :tenant` to every ORM statement on a tenant table; refuse unscoped sessions."""
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return  # already scoped by the statement that loaded the parent
    tenant_id = state.session.info.get(_TENANT_KEY)
    if tenant_id is None:
        if state.session.info.get(_UNSCOPED_KEY):
            return
        raise TenantScopeError("query outside a tenant scope: open the unit of work with an actor")
    state.statement = state.statement.options(*_tenant_criteria_for(tenant_id, _tables_of(state.statement)))


def _tables_of(statement: Any) -> frozenset[str]:
    """The names of the tables a statement reads or writes anywhere: its entities, joins, subqueries and CTEs.

    Remembered by the statement's cache key (its structure without the values: the same key, the same tables),
    which costs half of walking the statement again; a statement that has no key is walked."""
    key = statement._generate_cache_key()
    if key is None:
        return _find_tables(statement)
    tables = _TABLES_BY_KEY.get(key.key)
    if tables is None:
        if len(_TABLES_BY_KEY) >= _TABLES_BY_KEY_MAX:
            _TABLES_BY_KEY.clear()  # a bound, not an LRU: the app has a few hundred statement shapes
        tables = _TABLES_BY_KEY[key.key] = _find_tables(statement)
    return tables


_TABLES_BY_KEY: dict[Any, frozenset[str]] = {}
_TABLES_BY_KEY_MAX = 4096


def _find_tables(statement: Any) -> frozenset[str]:
    found = sql_util.find_tables(
        statement, check_columns=True, include_aliases=True, include_joins=True, include_selects=True, include_crud=True
    )
    return frozenset(table.name for table in found if isinstance(table, sa.Table))


@lru_cache(maxsize=4096)
def _tenant_criteria_for(tenant_id: uuid.UUID, tables: frozenset[str]) -> tuple[Any, ...]:
    """The criteria of the tenant tables among `tables` only. All 25 on every statement were each coerced and walked
    for the statement's cache key at every execution: about a seventh of the CPU of a console's live re-read."""
    by_table = {
        model.__tablename__: criterion
        for model, criterion in zip(_tenant_models(), _tenant_criteria(tenant_id), strict=True)
    }
    return tuple(by_table[name] for name in sorted(tables) if name in by_table)


@lru_cache(maxsize=4096)
def _tenant_criteria(tenant_id: uuid.UUID) -> tuple[Any, ...]:
    """One plain criterion per mapped tenant table, built once per tenant (building them per query was
    a quarter of a booking's time). A lambda on TenantMixin itself cannot work: SQLAlchemy first calls
    it with the mixin class, and a SQLModel mixin has no `tenant_id` class attribute."""
    return tuple(
        with_loader_criteria(model, col(model.tenant_id) == tenant_id, include_aliases=True)
        for model in _tenant_models()
    )


@lru_cache(maxsize=1)
def _tenant_models() -> tuple[type[TenantMixin], ...]:
    """Every mapped table class that carries a tenant."""
    import backend.models  # noqa: F401 - every table must be mapped before the list is fixed

    found: list[type[TenantMixin]] = []
    stack: list[type[TenantMixin]] = [TenantMixin]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if sa.inspect(sub, raiseerr=False) is not None and sub not in found:
                found.append(sub)
    return tuple(found)


@event.listens_for(Session, "before_flush")
def _stamp_tenant(session: Session, _ctx: Any, _instances: Any) -> None:
    """Give new rows the session's tenant and refuse rows of another tenant."""
    tenant_id = session.info.get(_TENANT_KEY)
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, TenantMixin):
            continue
        if tenant_id is None:
            if session.info.get(_UNSCOPED_KEY) and obj.tenant_id is not None:
                continue
            raise TenantScopeError("write outside a tenant scope")
        if obj.tenant_id is None:
            obj.tenant_id = tenant_id
        elif obj.tenant_id != tenant_id:
            raise TenantScopeError("write to another tenant's row refused")


AfterCommit = Callable[[], None]


class UnitOfWork:
    """One transaction for one actor. Rolls back unless `commit()` is called; runs hooks after commit.

    Usage::

        with UnitOfWork(actor) as uow:
            service.do_something(actor, uow, ...)
            uow.commit()
    """

    def __init__(
        self,
        actor: Actor | None = None,
        *,
        engine: Engine | None = None,
        system: bool = False,
    ) -> None:
        """`system=True` (no actor): cross-practice system work on the system engine (a role with BYPASSRLS on
        PostgreSQL); the ORM hook does not scope it."""
        if actor is None and not system:
            raise TenantScopeError("a unit of work needs an actor (or system=True for cross-tenant system work)")
        if actor is not None and system:
            raise TenantScopeError("a system unit of work has no actor: open a scoped one for the practice's work")
        self.actor = actor
        self._engine = engine or (get_system_engine() if system else get_engine())
        self._unscoped = system
        self._before_commit: list[AfterCommit] = []
        self._after_commit: list[AfterCommit] = []
        self._on_close: list[AfterCommit] = []
        self._committed = False
        self.session: Session

    @property
    def tenant_id(self) -> uuid.UUID | None:
        return self.actor.tenant_id if self.actor else None

    def __enter__(self) -> UnitOfWork:
        self.session = Session(self._engine, expire_on_commit=False)
        self.session.info[_TENANT_KEY] = self.tenant_id
        self.session.info[_UNSCOPED_KEY] = self._unscoped
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                # Detach what was loaded first: a read-only unit of work hands its results to the caller,
                # and a rollback would expire them.
                self.session.expunge_all()
                self.session.rollback()
        finally:
            self.session.close()
            hooks, self._on_close = self._on_close, []
            for hook in hooks:
                try:
                    hook()
                except Exception:
                    logger.exception("on-close hook failed")

    @property
    def closes_without_io(self) -> bool:
        """Whether ending it now would touch nothing outside the process: no transaction was begun (so no
        connection is held) and no close hook waits. The REST dependency then ends it on the event loop."""
        return not self.session.in_transaction() and not self._on_close

    def before_commit(self, hook: AfterCommit) -> None:
        """Run `hook` inside the transaction just before it commits (writes that belong to the whole change, made
        once). Its failure fails the commit."""
        self._before_commit.append(hook)

    def after_commit(self, hook: AfterCommit) -> None:
        """Run `hook` once the transaction has committed (publish events, enqueue tasks)."""
        self._after_commit.append(hook)

    def on_close(self, hook: AfterCommit) -> None:
        """Run `hook` when the unit of work ends, committed or not (release locks and markers)."""
        self._on_close.append(hook)

    def flush(self) -> None:
        self.session.flush()

    def commit(self) -> None:
        """Commit once; then run the after-commit hooks (their failures never undo the commit)."""
        before, self._before_commit = self._before_commit, []
        for hook in before:
            hook()
        self.session.commit()
        self._committed = True
        hooks, self._after_commit = self._after_commit, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                logger.exception("after-commit hook failed")


# Every process that can write users, memberships or sessions must tell the bearer-token cache (its listeners are
# on the Session class): importing it here registers them wherever a unit of work exists.
from backend.identity import actor_cache as _actor_cache  # noqa: E402,F401
