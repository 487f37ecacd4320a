/**
 * Capture sockets are closed at exec: a child process (`--large-flow-command`'s shell) must not
 * inherit one, or it would stay bound, and in its fanout group, until the child exits. Checked for
 * both capture methods on the loopback interface, by the socket's inode in the child's /proc/self/fd.
 */
import assert from "node:assert/strict";
import { type CaptureMethod, openSource } from "../src/capture/source.ts";
import { rootOnly } from "./support/root.ts";

for (const method of ["afpacket", "libpcap"] as CaptureMethod[]) {
  Deno.test(rootOnly("a live capture handle", {
    name: `capture, ${method}: a child process does not inherit the capture socket`,
    async fn() {
      const source = openSource({ device: "lo", method, bufferSize: 4 << 20 });
      try {
        const socket = Deno.readLinkSync(`/proc/self/fd/${source.selectableFd()}`);
        assert.match(socket, /^socket:\[\d+\]$/);
        const child = await new Deno.Command("sh", {
          args: ["-c", "ls -l /proc/self/fd"],
          stdout: "piped",
        }).output();
        assert.ok(child.success);
        const listing = new TextDecoder().decode(child.stdout);
        assert.match(listing, /-> /, "the child's descriptors are listed");
        assert.ok(!listing.includes(socket), `the child holds ${socket}:\n${listing}`);
      } finally {
        source.close();
      }
    },
  }));
}
