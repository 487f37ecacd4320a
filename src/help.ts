/**
 * `cutcap help [COMMAND]` and `cutcap COMMAND --help`: each command's usage line and summary here,
 * its options from the option table its parser uses (loaded on demand), so help never drifts from
 * what the parser accepts.
 */
import { formatOptions, type OptionTable } from "./cli/options.ts";

/** What help says about one command. */
interface CommandHelp {
  usage: string;
  summary: string;
  /** The command's option table; none for commands without options. */
  options?: () => Promise<OptionTable>;
}

/** Every command, in the order help lists them. */
export const COMMAND_HELP: Readonly<Record<string, CommandHelp>> = {
  capture: {
    usage: "cutcap [capture] [options]",
    summary: "capture live (--interface) or replay files (--read) into the archive",
    options: async () => (await import("./config.ts")).CAPTURE_OPTIONS,
  },
  serve: {
    usage: "cutcap serve [--out DIR] [--listen HOST:PORT] [options]",
    summary: "serve an existing archive (/query, /flows, /metrics) without capturing",
    options: async () => (await import("./cli/serve.ts")).SERVE_OPTIONS,
  },
  fleet: {
    usage: "cutcap fleet --clickhouse URL [--listen HOST:PORT] [options]",
    summary: "one API over many sensors: /flows from ClickHouse, /query from the sensors",
    options: async () => (await import("./fleet/mod.ts")).FLEET_OPTIONS,
  },
  query: {
    usage: "cutcap query [--server URL] [-w FILE] [options] QUERY",
    summary: "matching packets as pcap (cutcap query 'host 198.18.0.1' | tcpdump -nr -)",
    options: async () => (await import("./cli/query_client.ts")).QUERY_OPTIONS,
  },
  read: {
    usage: "cutcap read [options] QUERY [tcpdump options...]",
    summary: "the answer piped into tcpdump -r - (stenoread: cutcap read 'port 53' -nn -c 10)",
    options: async () => (await import("./cli/query_client.ts")).READ_OPTIONS,
  },
  flows: {
    usage: "cutcap flows [--server URL] [options] QUERY",
    summary: "matching flows as a table",
    options: async () => (await import("./cli/query_client.ts")).FLOWS_OPTIONS,
  },
  index: {
    usage: "cutcap index [--out DIR] FILE...",
    summary: "add existing pcap files (tcpdump's, gotm's) to an archive so they can be queried",
    options: async () => (await import("./cli/index_files.ts")).INDEX_OPTIONS,
  },
  interfaces: { usage: "cutcap interfaces", summary: "list capture interfaces" },
  version: { usage: "cutcap version", summary: "versions of cutcap, Deno and libpcap" },
  help: { usage: "cutcap help [COMMAND]", summary: "this help, or a command's options" },
};

/** The overview: every command, then the options of the default command (capture). */
export async function overviewHelp(): Promise<string> {
  const width = Math.max(...Object.values(COMMAND_HELP).map((c) => c.usage.length)) + 2;
  const commands = Object.values(COMMAND_HELP).map((c) => `  ${c.usage.padEnd(width)}${c.summary}`);
  return [
    "cutcap — full packet capture with flow cutoff, pcap archive, index and query",
    "",
    "Commands:",
    ...commands,
    "",
    "cutcap help COMMAND (or cutcap COMMAND --help) shows a command's options.",
    "",
    await commandHelp("capture"),
  ].join("\n");
}

/** One command's help: usage, summary and its options with their defaults. */
export async function commandHelp(command: string): Promise<string> {
  const help = COMMAND_HELP[command];
  const lines = [`Usage: ${help.usage}`, "", capitalize(help.summary)];
  const table = help.options === undefined ? {} : await help.options();
  lines.push("", "Options (defaults in brackets):", formatOptions(table));
  if (Object.values(table).some((o) => /DUR|SIZE/.test(o.arg ?? ""))) {
    lines.push(
      "",
      "Durations: 30s, 5m, 1h, 2d (a bare number is seconds). Sizes: 1500, 100MB, 64KiB, 1GiB.",
    );
  }
  return lines.join("\n");
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
