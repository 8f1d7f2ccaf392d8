/* circus._spawn: start a child as a sibling of the calling process.
 *
 * Used by circus/spawner.py, the spawner process circusd runs: the child is
 * cloned with CLONE_PARENT (its parent is circusd, which reaps it) and
 * CLONE_VM | CLONE_VFORK (no copy of the spawner's memory: the caller
 * sleeps until the child has exec'd or failed, as vfork does). Everything
 * the child needs is prepared before the clone: between the clone and the
 * exec it makes system calls only (no allocation, no Python), and reports
 * a failure in the shared memory: the errno and the step that failed.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* the steps, as circus/spawner.py names them */
enum { STEP_DESCRIPTORS, STEP_WORKING_DIR, STEP_PROCESS_GROUP, STEP_GROUPS, STEP_GID,
       STEP_UID, STEP_RLIMITS, STEP_EXEC };

#define STACK_BYTES (64 * 1024)

/* 32-bit ABIs keep 16-bit ids under the plain names */
#ifdef SYS_setresuid32
#define SYS_SETRESUID SYS_setresuid32
#define SYS_SETRESGID SYS_setresgid32
#define SYS_SETGROUPS SYS_setgroups32
#else
#define SYS_SETRESUID SYS_setresuid
#define SYS_SETRESGID SYS_setresgid
#define SYS_SETGROUPS SYS_setgroups
#endif

struct job {
    char **candidates;    /* paths to try, in order (a PATH search) */
    char **argv;
    char **envp;
    const char *cwd;      /* or NULL */
    int *targets, *sources, nfds;
    int process_group;
    gid_t *groups; int ngroups;   /* ngroups < 0: leave them */
    long gid, uid;                /* -1: leave it */
    int *rlimit_ids; struct rlimit *rlimit_values; int nrlimits;
    int lowest_free;              /* above every target */
    sigset_t parent_mask;
    int err, step;                /* step >= 0: the child failed there */
};

static int fail(struct job *job, int step)
{
    job->err = errno;
    job->step = step;
    _exit(255);
    return 0;
}

static void close_all_but(const int *keep, int nkeep)
{
    /* keep is sorted: close the gaps between its descriptors. Without
       close_range (Linux < 5.9, an old seccomp filter) the exec still
       closes every other descriptor: the spawner holds all of them
       close-on-exec. */
    unsigned int low = 0;
    for (int i = 0; i < nkeep; i++) {
        if ((unsigned int)keep[i] > low)
            syscall(SYS_close_range, low, (unsigned int)keep[i] - 1, 0);
        low = (unsigned int)keep[i] + 1;
    }
    syscall(SYS_close_range, low, ~0U, 0);
}

static int child_main(void *arg)
{
    struct job *job = arg;
    struct sigaction dfl;
    int lifted[256], sorted[256];

    /* handlers of the spawner (none of its own) must not run here, and a
       fresh process has these three at their default */
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL
                && (old.sa_handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ
                    || sig == SIGINT))
            sigaction(sig, &dfl, NULL);
    }

    /* every source goes above every target first, so that no dup2
       overwrites a descriptor still to be placed */
    for (int i = 0; i < job->nfds; i++) {
        lifted[i] = fcntl(job->sources[i], F_DUPFD_CLOEXEC, job->lowest_free);
        if (lifted[i] < 0)
            return fail(job, STEP_DESCRIPTORS);
    }
    for (int i = 0; i < job->nfds; i++) {
        if (dup2(lifted[i], job->targets[i]) < 0)
            return fail(job, STEP_DESCRIPTORS);
        sorted[i] = job->targets[i];
    }
    /* targets arrive sorted from the caller */
    close_all_but(sorted, job->nfds);

    if (job->cwd && chdir(job->cwd) < 0)
        return fail(job, STEP_WORKING_DIR);
    if (job->process_group && setpgid(0, 0) < 0)
        return fail(job, STEP_PROCESS_GROUP);
    /* raw calls: glibc's set*id would signal every thread of a threaded
       process, and this one shares the spawner's memory */
    if (job->ngroups >= 0 && syscall(SYS_SETGROUPS, job->ngroups, job->groups) < 0)
        return fail(job, STEP_GROUPS);
    if (job->gid >= 0 && syscall(SYS_SETRESGID, job->gid, job->gid, job->gid) < 0)
        return fail(job, STEP_GID);
    if (job->uid >= 0 && syscall(SYS_SETRESUID, job->uid, job->uid, job->uid) < 0)
        return fail(job, STEP_UID);
    for (int i = 0; i < job->nrlimits; i++)
        if (syscall(SYS_prlimit64, 0, job->rlimit_ids[i], &job->rlimit_values[i], NULL) < 0)
            return fail(job, STEP_RLIMITS);

    sigprocmask(SIG_SETMASK, &job->parent_mask, NULL);
    int first_error = 0;
    for (char **path = job->candidates; *path; path++) {
        execve(*path, job->argv, job->envp);
        /* as a PATH search does: remember the first error that is not
           "not there", report it, or the last one */
        if (errno != ENOENT && errno != ENOTDIR && !first_error)
            first_error = errno;
    }
    if (first_error)
        errno = first_error;
    return fail(job, STEP_EXEC);
}

/* --- from Python ---------------------------------------------------------- */
static char **byte_strings(PyObject *list)
{
    Py_ssize_t n = PyList_Size(list);
    if (n < 0)
        return NULL;
    char **out = PyMem_Calloc(n + 1, sizeof(char *));
    if (!out)
        return (char **)PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyBytes_Check(item)) {
            PyMem_Free(out);
            PyErr_SetString(PyExc_TypeError, "a list of bytes is expected");
            return NULL;
        }
        out[i] = PyBytes_AS_STRING(item);  /* the list holds it */
    }
    return out;
}

static int int_list(PyObject *list, int **out, Py_ssize_t *count)
{
    Py_ssize_t n = PyList_Size(list);
    if (n < 0)
        return -1;
    *out = PyMem_Calloc(n ? n : 1, sizeof(int));
    if (!*out) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long value = PyLong_AsLong(PyList_GET_ITEM(list, i));
        if (value == -1 && PyErr_Occurred())
            return -1;
        (*out)[i] = (int)value;
    }
    *count = n;
    return 0;
}

PyDoc_STRVAR(spawn_doc,
"spawn(candidates, argv, envp, cwd, targets, sources, process_group, groups,\n"
"      gid, uid, rlimit_ids, rlimit_values) -> (pid, errno, step)\n\n"
"Clone a child of this process's parent that places sources at targets\n"
"(sorted), closes every other descriptor, then sets its directory, process\n"
"group, groups, gid, uid and limits, and execs the first candidate that\n"
"runs. step is -1 once it exec'd; otherwise pid is a child that exited\n"
"with 255 (its parent reaps it), step tells what failed and errno why.");

static PyObject *spawn(PyObject *self, PyObject *args)
{
    PyObject *candidates, *argv, *envp, *cwd, *targets, *sources, *groups;
    PyObject *rlimit_ids, *rlimit_values;
    int process_group;
    long gid, uid;
    struct job job;
    PyObject *result = NULL;
    int *group_ints = NULL;
    Py_ssize_t count;
    char *stack = NULL;
    sigset_t all;

    if (!PyArg_ParseTuple(args, "O!O!O!OO!O!pOllO!O!", &PyList_Type, &candidates,
                          &PyList_Type, &argv, &PyList_Type, &envp, &cwd,
                          &PyList_Type, &targets, &PyList_Type, &sources, &process_group,
                          &groups, &gid, &uid, &PyList_Type, &rlimit_ids,
                          &PyList_Type, &rlimit_values))
        return NULL;
    memset(&job, 0, sizeof job);
    job.step = -1;
    job.process_group = process_group;
    job.gid = gid;
    job.uid = uid;
    job.ngroups = -1;
    if (!(job.candidates = byte_strings(candidates)) || !(job.argv = byte_strings(argv))
            || !(job.envp = byte_strings(envp)))
        goto done;
    if (cwd != Py_None) {
        if (!PyBytes_Check(cwd)) {
            PyErr_SetString(PyExc_TypeError, "cwd: bytes or None");
            goto done;
        }
        job.cwd = PyBytes_AS_STRING(cwd);
    }
    if (int_list(targets, &job.targets, &count) < 0)
        goto done;
    job.nfds = (int)count;
    if (int_list(sources, &job.sources, &count) < 0)
        goto done;
    if (count != job.nfds || job.nfds > 256) {
        PyErr_SetString(PyExc_ValueError, "targets and sources: as many, at most 256");
        goto done;
    }
    job.lowest_free = 3;
    for (int i = 0; i < job.nfds; i++)
        if (job.targets[i] >= job.lowest_free)
            job.lowest_free = job.targets[i] + 1;
    if (groups != Py_None) {
        if (!PyList_Check(groups) || int_list(groups, &group_ints, &count) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "groups: a list or None");
            goto done;
        }
        job.ngroups = (int)count;
        job.groups = PyMem_Calloc(count ? count : 1, sizeof(gid_t));
        if (!job.groups) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < count; i++)
            job.groups[i] = (gid_t)group_ints[i];
    }
    if (int_list(rlimit_ids, &job.rlimit_ids, &count) < 0)
        goto done;
    job.nrlimits = (int)count;
    if (PyList_Size(rlimit_values) != count) {
        PyErr_SetString(PyExc_ValueError, "rlimit_ids and rlimit_values: as many");
        goto done;
    }
    job.rlimit_values = PyMem_Calloc(count ? count : 1, sizeof(struct rlimit));
    if (!job.rlimit_values) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long long value = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(rlimit_values, i));
        if (value == (unsigned long long)-1 && PyErr_Occurred())
            goto done;
        job.rlimit_values[i].rlim_cur = job.rlimit_values[i].rlim_max = (rlim_t)value;
    }
    stack = PyMem_Malloc(STACK_BYTES);
    if (!stack) {
        PyErr_NoMemory();
        goto done;
    }

    /* no signal handler may run in the child before it reset them */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &job.parent_mask);
    pid_t pid = clone(child_main, stack + STACK_BYTES,
                      CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, &job);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &job.parent_mask, NULL);
    if (pid < 0) {
        errno = clone_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = Py_BuildValue("(iii)", (int)pid, job.err, job.step);
done:
    PyMem_Free(job.candidates);
    PyMem_Free(job.argv);
    PyMem_Free(job.envp);
    PyMem_Free(job.targets);
    PyMem_Free(job.sources);
    PyMem_Free(job.groups);
    PyMem_Free(group_ints);
    PyMem_Free(job.rlimit_ids);
    PyMem_Free(job.rlimit_values);
    PyMem_Free(stack);
    return result;
}

static PyMethodDef methods[] = {
    {"spawn", spawn, METH_VARARGS, spawn_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_spawn",
    "Start a child as a sibling of the calling process (see circus/spawner.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__spawn(void)
{
    return PyModule_Create(&module);
}
