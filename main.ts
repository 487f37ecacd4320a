/**
 * cutcap: full packet capture with flow cutoff, rolling pcap archive, index and query server.
 *
 *   cutcap [capture] [options]      capture (the default command)
 *   cutcap serve --out DIR           serve an existing archive without capturing
 *   cutcap fleet --clickhouse URL    one API over many sensors (flow records in ClickHouse)
 *   cutcap query QUERY               packets matching QUERY as pcap (stdout or -w FILE)
 *   cutcap read QUERY [tcpdump opts] the answer piped into tcpdump (stenoread)
 *   cutcap flows QUERY               flows matching QUERY as a table
 *   cutcap index FILE...             index existing pcap files so they can be queried in place
 *   cutcap interfaces                list capture interfaces
 *   cutcap version                   versions of cutcap, Deno and libpcap
 */
import { VERSION } from "./src/version.ts";
import { commandHelp, overviewHelp } from "./src/help.ts";
import { closestName, UsageError } from "./src/cli/options.ts";

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  capture: async (args) => {
    // The first capture worker loads its modules (~50 ms) while this thread loads its own and
    // checks the configuration; capture hands it its setup once it knows what to capture.
    const spare = new Worker(new URL("./src/worker/worker.ts", import.meta.url), {
      type: "module",
    });
    const { parseCaptureArgs } = await import("./src/config.ts");
    const { runCaptureCommand } = await import("./src/cli/capture.ts");
    return runCaptureCommand(parseCaptureArgs(args), { spareWorker: spare });
  },
  serve: async (args) => (await import("./src/cli/serve.ts")).runServeCommand(args),
  fleet: async (args) => (await import("./src/fleet/mod.ts")).runFleetCommand(args),
  query: async (args) => (await import("./src/cli/query_client.ts")).runQueryCommand(args),
  read: async (args) => (await import("./src/cli/query_client.ts")).runReadCommand(args),
  flows: async (args) => (await import("./src/cli/query_client.ts")).runFlowsCommand(args),
  index: async (args) => (await import("./src/cli/index_files.ts")).runIndexCommand(args),
  interfaces: async (args) => {
    refuseArguments("interfaces", args);
    const { findAllDevs, loadLibpcap } = await import("./ffi/libpcap.ts");
    loadLibpcap(Deno.env.get("CUTCAP_LIBPCAP"));
    for (const dev of findAllDevs()) {
      const flags = [
        dev.up ? "up" : "down",
        dev.running ? "running" : "",
        dev.loopback ? "loopback" : "",
      ]
        .filter((f) => f !== "").join(",");
      console.log(`${dev.name}\t${flags}\t${dev.addresses.join(" ")}\t${dev.description}`);
    }
    return 0;
  },
  version: async (args) => {
    refuseArguments("version", args);
    console.log(`cutcap ${VERSION}`);
    console.log(
      `deno ${Deno.version.deno} (v8 ${Deno.version.v8}, typescript ${Deno.version.typescript})`,
    );
    try {
      const { libpcapVersion, loadLibpcap } = await import("./ffi/libpcap.ts");
      loadLibpcap(Deno.env.get("CUTCAP_LIBPCAP"));
      console.log(libpcapVersion());
    } catch (error) {
      console.log(`libpcap: not loaded (${error instanceof Error ? error.message : error})`);
    }
    return 0;
  },
  help: async (args) => {
    if (args.length > 1) refuseArguments("help", args.slice(1));
    console.log(
      args.length === 0 ? await overviewHelp() : await commandHelp(knownCommand(args[0])),
    );
    return 0;
  },
};

/** `name` when it is a command; else a UsageError with the closest command. */
function knownCommand(name: string): string {
  if (COMMANDS[name] !== undefined) return name;
  const closest = closestName(name, Object.keys(COMMANDS));
  const hint = closest === undefined
    ? `expected one of ${Object.keys(COMMANDS).join(", ")}`
    : `did you mean ${closest}? (cutcap help lists the commands)`;
  throw new UsageError(`Unknown command "${name}": ${hint}`);
}

function refuseArguments(command: string, args: string[]): void {
  if (args.length > 0) {
    throw new UsageError(`Unexpected argument "${args[0]}": cutcap ${command} takes none`);
  }
}

/** `--help` or `-h` among the options (before a `--`; for `read`, before the query: tcpdump's follow). */
function asksForHelp(command: string, args: string[]): boolean {
  const end = command === "read" ? args.findIndex((a) => !a.startsWith("-")) : args.indexOf("--");
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === "--help" || a === "-h");
}

async function main(args: string[]): Promise<number> {
  const first = args[0];
  try {
    if (first === "--help" || first === "-h") return await COMMANDS.help([]);
    if (first === "--version") return await COMMANDS.version([]);
    const name = first === undefined || first.startsWith("-") ? "capture" : knownCommand(first);
    const rest = name === first ? args.slice(1) : args;
    if (asksForHelp(name, rest)) return await COMMANDS.help([name]);
    return await COMMANDS[name](rest);
  } catch (error) {
    console.error(`cutcap: ${error instanceof Error ? error.message : String(error)}`);
    return error instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
