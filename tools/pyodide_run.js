// Runs Python on Pyodide under Node, as `python -c CODE ...` or `python -m MODULE ...` would:
//   node --stack-size=2000 pyodide_run.js PYODIDE_DIR PACKAGES_DIR PROJECT_DIR '["-m", "pytest"]'
// The project is mounted at /project (the working folder), the packages at /packages, first on
// sys.path. The environment passes through (HOME is Pyodide's own). Exits with Python's status.
"use strict";
const path = require("path");

const [pyodideDir, packagesDir, projectDir, argsJson] = process.argv.slice(2);
const { loadPyodide } = require(path.join(path.resolve(pyodideDir), "pyodide.js"));

const MAIN = `
import os, runpy, sys, traceback
os.environ.clear()
os.environ.update(ENV)
sys.path.insert(0, "/packages")
os.chdir("/project")
sys.dont_write_bytecode = True
args = list(ARGS)
status = 0
try:
    if args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        sys.path.insert(0, "")
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    elif args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path.insert(0, "/project")
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        raise SystemExit("usage: -c CODE [ARG ...] | -m MODULE [ARG ...]")
except SystemExit as exit:  # as python does: an int is the status, anything else is printed
    if exit.code is None or isinstance(exit.code, int):
        status = exit.code or 0
    else:
        print(exit.code, file=sys.stderr)
        status = 1
except BaseException:
    traceback.print_exc()
    status = 1
sys.stdout.flush()
sys.stderr.flush()
status
`;

(async () => {
  const py = await loadPyodide({ indexURL: path.resolve(pyodideDir) + "/" });
  for (const [where, dir] of [["/packages", packagesDir], ["/project", projectDir]]) {
    py.FS.mkdirTree(where);
    py.FS.mount(py.FS.filesystems.NODEFS, { root: path.resolve(dir) }, where);
  }
  py.globals.set("ARGS", py.toPy(JSON.parse(argsJson)));
  py.globals.set("ENV", py.toPy({ ...process.env, HOME: "/home/pyodide" }));
  process.exitCode = py.runPython(MAIN);
})().catch((error) => {
  console.error(error);
  process.exitCode = 3;
});
