"""pytest wiring: one fresh `natter` per test module, and `async def`
tests run on their own event loop (slixmpp and websockets are asyncio
libraries), with the test's clients closed on that loop at its end.

The binary is built by `scripts/test-xmpp-interop`, never here; set
NATTER_BIN to test another build.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil

import pytest

from harness import Clients, Server, start_server

#: A whole test gets this long before it is failed (pytest-timeout, set in
#: pytest.ini, is the backstop if the loop itself hangs).
TEST_TIMEOUT = 90


@pytest.fixture(scope="module")
def server(request):
    srv = start_server()
    yield srv
    srv.stop()
    failed = getattr(request.node, "_interop_failed", False)
    if failed:
        # Keep the data and log of a failing module for a look.
        print(f"\nnatter data dir and log kept at {srv.data_dir}")
    else:
        shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture
def clients(server: Server) -> Clients:
    return Clients(server)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {n: pyfuncitem.funcargs[n] for n in names}

    async def main():
        try:
            await asyncio.wait_for(fn(**kwargs), TEST_TIMEOUT)
        finally:
            for v in kwargs.values():
                if isinstance(v, Clients):
                    await v.aclose()

    asyncio.run(main())
    return True


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        # Mark the module so that its server's files are kept.
        item.parent._interop_failed = True
        server = item.funcargs.get("server") if hasattr(item, "funcargs") else None
        if server is not None and report.when == "call":
            tail = "\n".join(server.log().splitlines()[-40:])
            report.sections.append(("natter log (last 40 lines)", tail))
    return report
