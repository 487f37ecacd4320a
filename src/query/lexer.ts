/**
 * Splits query text into tokens. Words run until whitespace or one of `( ) | & ! =`, so
 * `ip=1.1.1.1|ip=::1` is five tokens and IPv6 addresses, ranges (`a-b`), CIDRs and RFC 3339 times
 * stay single words.
 */

import { QueryError } from "./ast.ts";

/** Token kinds; `word` covers keywords, numbers, addresses and times alike. */
export type TokenKind = "word" | "(" | ")" | "|" | "||" | "&&" | "!" | "=" | "end";

/** One token with its 0-based position in the query text. */
export interface Token {
  kind: TokenKind;
  text: string;
  pos: number;
}

const SPECIAL = "()|&!=";

function isSpace(c: string): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v";
}

/** Tokenizes `text`; the last token is always `end` at text.length. */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === "|" || c === "&") {
      if (text[i + 1] === c) {
        tokens.push({ kind: c === "|" ? "||" : "&&", text: c + c, pos: i });
        i += 2;
      } else if (c === "|") {
        tokens.push({ kind: "|", text: c, pos: i });
        i++;
      } else {
        throw new QueryError(`Unexpected "&" at position ${i}: expected "&&"`, i);
      }
      continue;
    }
    if (c === "(" || c === ")" || c === "!" || c === "=") {
      tokens.push({ kind: c, text: c, pos: i });
      i++;
      continue;
    }
    const start = i;
    while (i < text.length && !isSpace(text[i]) && !SPECIAL.includes(text[i])) i++;
    tokens.push({ kind: "word", text: text.slice(start, i), pos: start });
  }
  tokens.push({ kind: "end", text: "", pos: text.length });
  return tokens;
}
