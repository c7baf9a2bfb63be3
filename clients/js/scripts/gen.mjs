// Generates src/gen/inventory.js from the node's own schema (../../protocol) with
// capnp-es's compiler plugin, so the client never drifts from the wire contract.
// Needs the `capnp` tool (Debian: capnproto) and capnp-es's plugin in node_modules.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const protocol = resolve(root, "../../protocol");
const out = join(root, "src", "gen");
const plugin = join(root, "node_modules", ".bin", "capnpc-js");
if (!existsSync(join(protocol, "inventory.capnp"))) {
  console.error(`holdfast-client: no schema at ${protocol} (run from a Holdfast checkout)`);
  process.exit(1);
}
mkdirSync(out, { recursive: true });
const include = ["/usr/include", "/usr/local/include"].filter((d) => existsSync(join(d, "capnp", "c++.capnp")));
execFileSync(
  "capnp",
  ["compile", ...include.map((d) => `-I${d}`), `-o${plugin}:${out}`, `--src-prefix=${protocol}`,
   join(protocol, "inventory.capnp")],
  { stdio: ["ignore", "ignore", "inherit"] },
);
