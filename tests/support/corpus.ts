/**
 * The tcpdump project's test captures (many deliberately malformed, many link types), vendored under
 * tests/corpus/tcpdump with their LICENSE so the suite runs from any checkout.
 */

/** Directory of the corpus, with a trailing slash. */
export const CORPUS_DIR: string = new URL("../corpus/tcpdump/", import.meta.url).pathname;
