// Real holdfast node processes for the tests: the binary from HOLDFAST_BIN (default:
// the checkout's build/cli/holdfast), a temporary data directory, a port the node picks
// (port 0) or one given, waited for by its "listening on" line, killed by PID.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const holdfastBin = process.env.HOLDFAST_BIN
  ?? resolve(dirname(fileURLToPath(import.meta.url)), "../../../build/cli/holdfast");

const started = new Set();
process.on("exit", () => { for (const p of started) try { p.kill("SIGKILL"); } catch {} });

export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), "holdfast-js-"));
  t?.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Starts a node; resolves to { address, port, process, stop() } once it listens.
export async function startNode({ data, listen = "127.0.0.1:0", args = [], t, deadlineMs = 20000 }) {
  const where = listen ? ["--listen", listen] : [];  // "": the cluster file's address
  const child = spawn(holdfastBin, ["node", "--data", data, ...where, "--log-level", "warn", ...args],
                      { stdio: ["ignore", "pipe", "pipe"] });
  started.add(child);
  let output = "";
  const address = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`node did not listen within ${deadlineMs} ms:\n${output}`)), deadlineMs);
    const look = (chunk) => {
      output += chunk;
      const m = /listening on (\S+)/.exec(output);
      if (m) { clearTimeout(timer); res(m[1]); }
    };
    child.stdout.on("data", look);
    child.stderr.on("data", look);
    child.once("exit", (code) => { clearTimeout(timer); rej(new Error(`node exited (${code}) before listening:\n${output}`)); });
  });
  const exited = new Promise((res) => child.once("exit", res));
  const http = /node http on (\S+)/.exec(output)?.[1] ?? await new Promise((res) => {
    if (!args.includes("--http")) return res(null);
    const look = () => { const m = /node http on (\S+)/.exec(output); if (m) res(m[1]); };
    child.stdout.on("data", look);
    look();
  });
  const node = {
    address, http, port: Number(address.split(":").pop()), process: child,
    // SIGSTOP, returning once the kernel has stopped it (state T in /proc): a signal is
    // delivered asynchronously, and a call made meanwhile could still be answered.
    async stop() {
      child.kill("SIGSTOP");
      await eventually(() => /^\d+ \(.*\) T /.test(readFileSync(`/proc/${child.pid}/stat`, "utf8")), 5000, "node stopped");
    },
    resume() { child.kill("SIGCONT"); },
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
      started.delete(child);
    },
  };
  t?.after(() => node.kill());
  return node;
}

// `holdfast ARGS...` (the CLI), its stdout.
export function holdfast(...args) {
  return execFileSync(holdfastBin, args, { encoding: "utf8" });
}

// A tokens file with one token per role; returns { file, admin, client }.
export function tokensFile(dir) {
  const tokens = {};
  let toml = "";
  for (const role of ["admin", "client"]) {
    const out = holdfast("token", "new", "--role", role, "--name", `js-${role}`);
    tokens[role] = /^token: (\S+)/m.exec(out)[1];
    toml += out.slice(out.indexOf("[[token]]")) + "\n";
  }
  const file = join(dir, "tokens.toml");
  writeFileSync(file, toml);
  return { file, ...tokens };
}

// Polls `check` until it returns true or the deadline passes.
export async function eventually(check, deadlineMs = 10000, what = "condition") {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`${what} not reached within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Awaits `promise` and checks it rejected with a HoldfastError of `code`; returns it.
export async function rejectsWith(promise, code) {
  const err = await promise.then(() => null, (e) => e);
  assert.equal(err?.name, "HoldfastError", `expected HoldfastError ${code}, got ${err}`);
  assert.equal(err.code, code, err.message);
  return err;
}
