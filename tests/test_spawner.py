"""circus.spawner: children started by a small helper process, yet circusd's
own children, with exactly the descriptors, user, limits and errors that an
in-process Popen gives them."""
import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from circus import fdtable
from circus import spawner as spawner_module
from circus.process import Process
from circus.spawner import Child, spawner
from support import ROOT, children_of, is_spawner, pid_alive, wait_exec, wait_for

PY = sys.executable


@pytest.fixture(params=["spawner", "in-process"])
def spawn_path(request, monkeypatch):
    """Both ways a Process can start: the same result is expected of each."""
    monkeypatch.setenv("CIRCUS_SPAWNER", "1" if request.param == "spawner" else "0")
    yield request.param
    spawner().close()


def expected_type(spawn_path):
    return Child if spawn_path == "spawner" else subprocess.Popen


def sleeper_spec(seconds):
    return {"argv": ["sleep", "%d.%d" % (seconds, os.getpid())], "executable": "/bin/sleep",
            "env": {}, "cwd": "/", "uid": None, "gid": None, "groups": None, "rlimits": [],
            "process_group": True}


def kill_all(children):
    for child in children:
        if child is not None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


def stopped_spawner():
    """Start the spawner and stop it (SIGSTOP): it answers nothing until
    SIGCONT. Returns its Popen."""
    assert spawner().start()
    helper = spawner()._process
    os.kill(helper.pid, signal.SIGSTOP)
    return helper


def zombies():
    return [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]


PLACEMENT_PROGRAM = """
import json, os, socket, subprocess, sys
from circus.process import Process
# descriptors at the numbers the spawner's own (its socket, /dev/null, the
# received descriptors, its pipe) take in the clone, and a high one
held = {}
for target in (3, 4, 5, 6, 7, 9, 250):
    sock = socket.socket()
    if sock.fileno() != target:
        os.dup2(sock.fileno(), target, inheritable=False)
        sock.close()
    else:
        sock.detach()
    held[target] = os.fstat(target).st_ino
process = Process(1, sys.executable, args=["-c", "import os, time; print(os.getppid(), "
                  "flush=True); time.sleep(60)"], pass_fds=sorted(held), use_fds=True,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
ppid = int(process.stdout.readline())
fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (process.pid, fd))
       for fd in os.listdir("/proc/%d/fd" % process.pid)}
print(json.dumps({"type": type(process._popen).__name__, "ppid": ppid, "me": os.getpid(),
                  "fds": fds, "held": held}))
process.stop(timeout=5)
"""


def test_a_child_holds_its_descriptors_at_their_numbers_and_no_other(spawn_path, tmp_path):
    import json
    program = tmp_path / "placement.py"
    program.write_text(PLACEMENT_PROGRAM)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([PY, str(program)], env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    seen = json.loads(out.stdout)
    assert seen["type"] == expected_type(spawn_path).__name__
    assert seen["ppid"] == seen["me"]  # its parent's child, whichever way it started
    fds = {int(fd): link for fd, link in seen["fds"].items()}
    held = {int(fd): inode for fd, inode in seen["held"].items()}
    assert sorted(fds) == [0, 1, 2] + sorted(held)
    assert fds[0] == "/dev/null" and fds[1].startswith("pipe:") and fds[2].startswith("pipe:")
    assert fds[1] != fds[2]
    for fd, inode in held.items():
        assert fds[fd] == "socket:[%d]" % inode, (fd, fds[fd])


def test_options_reach_the_child(spawn_path, tmp_path):
    # (Python adds LC_CTYPE to its own environment in the C locale)
    script = ("import os, resource, sys; print(os.getcwd(), os.environ.get('ONLY'), "
              "len(set(os.environ) - {'LC_CTYPE'}), "
              "resource.getrlimit(resource.RLIMIT_NOFILE)[0], "
              "os.getpgid(0) == os.getpid()); print('to stderr', file=sys.stderr)")
    process = Process(1, PY, args=["-c", script], working_dir=str(tmp_path),
                      env={"ONLY": "this"}, rlimits={"nofile": 99},
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert isinstance(process._popen, expected_type(spawn_path))
    out, err = process.stdout.read(), process.stderr.read()
    assert out.split() == [str(tmp_path).encode(), b"this", b"1", b"99", b"True"]
    assert err == b"to stderr\n"
    assert process._popen.wait() == 0
    # the shell, the executable under another name, circusd's process group
    shell = Process(2, "echo $0; exit 7", shell=True, stdout=subprocess.PIPE)
    assert shell.stdout.read() == b"/bin/sh\n" and shell._popen.wait() == 7
    renamed = Process(3, "shown-name -c 'echo $0'",
                      executable="/bin/sh", stdout=subprocess.PIPE, new_process_group=False)
    assert renamed.stdout.read() == b"shown-name\n"
    assert os.getpgid(renamed.pid) == os.getpgrp()
    assert renamed._popen.wait() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_user_group_and_supplementary_groups(spawn_path):
    import grp
    import pwd
    nobody = pwd.getpwnam("nobody")
    gid = grp.getgrnam("nogroup").gr_gid
    process = Process(1, "/bin/sh", args=["-c", "ps -o ruid=,euid=,suid=,rgid=,egid=,sgid= -p $$;"
                                               " id -G"],
                      uid=nobody.pw_uid, gid=gid, stdout=subprocess.PIPE)
    ids, groups = process.stdout.read().decode().splitlines()
    assert ids.split() == [str(nobody.pw_uid)] * 3 + [str(gid)] * 3
    assert sorted(map(int, groups.split())) == sorted(set(os.getgrouplist("nobody", gid)))
    assert process._popen.wait() == 0


def test_failures_raise_what_popen_raises_and_leave_no_zombie(spawn_path, tmp_path):
    before = zombies()
    not_executable = tmp_path / "data.txt"
    not_executable.write_text("hello")
    with pytest.raises(PermissionError) as raised:
        Process(1, str(not_executable))
    assert raised.value.errno == errno.EACCES
    assert raised.value.filename == str(not_executable)
    with pytest.raises(FileNotFoundError) as raised:
        Process(2, "sleep 1", working_dir=str(tmp_path / "gone"))
    assert raised.value.filename == str(tmp_path / "gone")
    with pytest.raises((subprocess.SubprocessError, OSError)) as raised:
        Process(3, "sleep 1", rlimits={"nofile": 10 ** 12})
    if spawn_path == "spawner":  # Popen says only "Exception occurred in preexec_fn"
        assert "rlimits" in str(raised.value)
    assert zombies() == before
    if os.geteuid() != 0:
        with pytest.raises(PermissionError):
            Process(4, "sleep 1", uid=0)
        assert zombies() == before


def test_a_killed_spawner_is_replaced_and_spawns_go_on_meanwhile(monkeypatch):
    monkeypatch.setenv("CIRCUS_SPAWNER", "1")
    before = zombies()
    first = Process(1, "sleep 120")
    assert isinstance(first._popen, Child)
    helper = spawner()._process
    assert pid_alive(helper.pid)
    os.kill(helper.pid, signal.SIGKILL)
    processes = [first]
    try:
        # the next spawn finds it gone: started in-process, nothing lost
        processes.append(Process(2, "sleep 120"))
        assert isinstance(processes[1]._popen, subprocess.Popen) and pid_alive(processes[1].pid)
        assert zombies() == before  # the dead spawner was collected
        # and another spawner once RESTART_DELAY has passed
        monkeypatch.setattr(spawner_module, "RESTART_DELAY", 0.0)
        spawner()._retry_at = 0.0
        processes.append(Process(3, "sleep 120"))
        assert isinstance(processes[2]._popen, Child)
        assert spawner()._process.pid != helper.pid
    finally:
        for process in processes:
            process.stop(timeout=5)
            assert process.returncode == -signal.SIGTERM
    spawner().close()
    assert zombies() == before and not any(map(is_spawner, psutil.Process().children()))


def test_children_whose_answers_nobody_reads_do_not_outlive_the_spawner(monkeypatch):
    # requests sent, then the spawner closed before their answers were
    # read (an arbiter stopping, a spawner that stopped answering): the
    # children it started are killed and reaped, not left untracked
    monkeypatch.setenv("CIRCUS_SPAWNER", "1")
    before = zombies()
    spec = sleeper_spec(121)
    marker = " ".join(spec["argv"])
    tickets = [spawner().submit(spec, {}) for _ in range(3)]
    assert None not in tickets
    wait_for(lambda: len(mine(marker)) == 3, message="the three children")
    assert spawner().result(tickets[0], spec) is not None  # one claimed
    spawner().close()
    left = mine(marker)
    assert len(left) == 1  # the claimed one is its owner's to stop
    os.kill(left[0], signal.SIGKILL)
    os.waitpid(left[0], 0)
    assert zombies() == before


def mine(marker):
    found = []
    for child in psutil.Process().children():
        try:
            if " ".join(child.cmdline()) == marker and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.Error:
            pass
    return found


def test_other_stdout_targets_go_through_popen(tmp_path):
    # a file object or a descriptor as a target is Popen's to handle
    with open(tmp_path / "out.txt", "wb") as handle:
        process = Process(1, "echo written", stdout=handle)
        assert isinstance(process._popen, subprocess.Popen)
        assert process._popen.wait() == 0
    assert (tmp_path / "out.txt").read_bytes() == b"written\n"
    with pytest.raises(ValueError):
        Process(2, "echo", env={"A": "nul\0byte"})


def test_circusd_spawns_through_one_spawner_that_leaves_with_it(circusd):
    # 200 processes: 400 pipe ends in circusd, a dozen descriptors in the
    # spawner, and 3 in each child
    daemon = circusd("""
        [watcher:many]
        cmd = sleep 300
        numprocesses = 200
        """)
    kids = wait_for(lambda: (lambda k: k if len(k) == 200 else None)(daemon.children()),
                    timeout=30, message="200 processes")
    wait_exec([k.pid for k in kids])
    helpers = [c for c in psutil.Process(daemon.proc.pid).children() if is_spawner(c)]
    assert len(helpers) == 1
    assert helpers[0].num_fds() < 20 < 400 < daemon_fds(daemon)
    # its descriptor table was grown ahead of the start (circus.fdtable)
    assert descriptor_table_size(daemon.proc.pid) >= fdtable.PER_PROCESS * 200
    for kid in kids[:20]:
        assert kid.ppid() == daemon.proc.pid
        assert sorted(int(f) for f in os.listdir("/proc/%d/fd" % kid.pid)) == [0, 1, 2]
    assert daemon.call("quit", waiting=True)["status"] == "ok"
    daemon.proc.wait(30)
    wait_for(lambda: not pid_alive(helpers[0].pid), message="the spawner to exit")
    assert not any(pid_alive(k.pid) for k in kids)


def daemon_fds(daemon):
    return len(os.listdir("/proc/%d/fd" % daemon.proc.pid))


def descriptor_table_size(pid):
    with open("/proc/%d/status" % pid) as status:
        return next(int(line.split()[1]) for line in status if line.startswith("FDSize:"))


def test_circusd_grows_its_descriptor_table_before_anything_starts(circusd):
    # at circusd's start, before its first thread, a growth costs nothing:
    # room for every process of the config, started later or not
    daemon = circusd("""
        [watcher:later]
        cmd = sleep 300
        numprocesses = 200
        autostart = false
        """)
    assert daemon.call("status", name="later")["status"] == "stopped"
    assert descriptor_table_size(daemon.proc.pid) >= fdtable.PER_PROCESS * 200


def test_children_of_skips_only_the_spawner(circusd):
    daemon = circusd("""
        [watcher:one]
        cmd = sleep 300
        """)
    kids = wait_for(lambda: children_of(daemon.proc.pid), message="the process")
    everything = psutil.Process(daemon.proc.pid).children()
    assert len(everything) == 2 and sum(map(is_spawner, everything)) == 1
    assert [k.pid for k in kids] == [p.pid for p in everything if not is_spawner(p)]


def test_the_extension_is_built_wherever_a_c_compiler_is():
    # setup.py builds circus/_spawn optionally (pip install works without a
    # compiler, and circusd then spawns with Popen): where the compiler is,
    # a missing extension is a broken install
    from support.framestack import c_compiler
    if c_compiler() is None:
        pytest.skip("no C compiler with Python's headers: the extension cannot be built here")
    assert spawner_module._extension_path() is not None, (
        "circus/_spawn is not built, yet %s is here: rerun pip install -e ." % c_compiler())
    assert spawner().available()


def test_a_child_that_exited_before_it_was_watched_is_reaped():
    # a batch's child can exit during the loop's turn, before circusd has
    # read its pid: its SIGCHLD finds no owner and leaves it; check_soon()
    # then collects it without waiting for another child's SIGCHLD

    from circus.reaper import Reaper

    async def main():
        loop = asyncio.get_running_loop()
        reaper = Reaper(loop)
        reaper.start()
        try:
            pid = os.posix_spawn("/bin/true", ["true"], {})
            wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                     message="the zombie")
            for _ in range(5):
                await asyncio.sleep(0.01)  # its SIGCHLD is handled: not ours
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            exited = loop.create_future()
            reaper.watch(pid, lambda pid, status: exited.set_result(status))
            reaper.check_soon([pid])
            assert os.waitstatus_to_exitcode(await asyncio.wait_for(exited, 5)) == 0
        finally:
            reaper.close()
    asyncio.run(main())


def test_the_loop_runs_while_it_waits_for_answers(monkeypatch):
    # a spawner slow to answer (here: stopped) must not block circusd's
    # loop: answered() waits on the loop, as several watchers may at once
    # (each woken by the answer, well before REPLY_TIMEOUT), and result()
    # then has the answer
    monkeypatch.setenv("CIRCUS_SPAWNER", "1")
    spec = sleeper_spec(123)

    async def main():
        helper = stopped_spawner()
        try:
            tickets = [spawner().submit(spec, {}) for _ in range(2)]
            waiting = [asyncio.ensure_future(spawner().answered(t)) for t in tickets]
            for _ in range(20):  # the loop turns meanwhile
                await asyncio.sleep(0.01)
            assert not any(w.done() for w in waiting)
        finally:
            os.kill(helper.pid, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(*waiting), spawner_module.REPLY_TIMEOUT / 2)
        return [spawner().result(t, spec) for t in tickets]
    children = asyncio.run(main())
    try:
        assert all(isinstance(c, Child) and psutil.Process(c.pid).ppid() == os.getpid()
                   for c in children)
    finally:
        kill_all(children)
    spawner().close()


def test_a_spawner_that_does_not_answer_in_time_is_replaced(monkeypatch):
    monkeypatch.setenv("CIRCUS_SPAWNER", "1")
    monkeypatch.setattr(spawner_module, "REPLY_TIMEOUT", 0.3)
    monkeypatch.setattr(spawner_module, "RESTART_DELAY", 0.0)
    before = zombies()
    spec = sleeper_spec(124)

    async def main():
        helper = stopped_spawner()  # killed, stopped or not, once replaced
        ticket = spawner().submit(spec, {})
        await asyncio.wait_for(spawner().answered(ticket), 5)
        return helper, ticket
    helper, ticket = asyncio.run(main())
    assert spawner()._process is None and not pid_alive(helper.pid)
    assert spawner().result(ticket, spec) is None  # the caller spawns in-process
    assert mine(" ".join(spec["argv"])) == [] and zombies() == before


def test_a_waiter_whose_answer_another_caller_read_is_woken(monkeypatch):
    # a blocking result() (a respawn, a spawn hook's one-by-one start) reads
    # every answer up to its own: one that answered() waits for is then in
    # circusd's hands and no longer on the socket; its waiter is woken
    monkeypatch.setenv("CIRCUS_SPAWNER", "1")
    spec = sleeper_spec(125)

    async def main():
        helper = stopped_spawner()
        try:
            first, second = spawner().submit(spec, {}), spawner().submit(spec, {})
            waiting = asyncio.ensure_future(spawner().answered(first))
            await asyncio.sleep(0)  # it looks, finds nothing, and waits
            assert not waiting.done() and spawner()._waiters
        finally:
            os.kill(helper.pid, signal.SIGCONT)
        children = [spawner().result(second, spec)]  # reads the first answer too
        await asyncio.wait_for(waiting, spawner_module.REPLY_TIMEOUT / 2)
        children.append(spawner().result(first, spec))
        return children
    children = asyncio.run(main())
    try:
        assert all(isinstance(c, Child) for c in children)
    finally:
        kill_all(children)
    assert spawner()._waiters == []
    spawner().close()


def test_a_spawner_that_keeps_answering_is_not_failed_behind_a_queue(monkeypatch):
    # REPLY_TIMEOUT is a silence: answers to the requests ahead of ours,
    # each within it, keep the wait going however long the queue
    monkeypatch.setattr(spawner_module, "REPLY_TIMEOUT", 0.5)
    helper = spawner_module.Spawner()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.settimeout(spawner_module.REPLY_TIMEOUT)
    helper._sock, helper._owner = ours, os.getpid()  # the test plays the spawner
    monkeypatch.setattr(helper, "_ready", lambda: True)
    spec = sleeper_spec(126)
    answer = spawner_module.REPLY.pack(0, 1, errno.ENOENT, spawner_module.EXEC)

    async def main():
        loop = asyncio.get_running_loop()
        tickets = [helper.submit(spec, {}) for _ in range(3)]
        for n in range(3):  # 0.3 s apart: 0.9 s in all
            loop.call_later(0.3 * (n + 1), theirs.send, answer)
        t0 = loop.time()
        await asyncio.wait_for(helper.answered(tickets[2]), 5)
        return tickets, loop.time() - t0
    try:
        tickets, waited = asyncio.run(main())
        assert waited >= 0.85 and helper._sock is ours  # not replaced
        with pytest.raises(FileNotFoundError):
            helper.result(tickets[2], spec)
    finally:
        ours.close()
        theirs.close()
