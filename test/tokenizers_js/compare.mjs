// compare.mjs - libskipless's tokenizer against @huggingface/tokenizers (an
// independent pure-JavaScript implementation of tokenizer.json).
//
//   node test/tokenizers_js/compare.mjs PATH/TO/skipless MODEL...
//
// For every MODEL (a directory with tokenizer.json, or a .safetensors file with
// __metadata__ "tokenizer.json"), encodes each text of CORPUS with both
// implementations (`skipless tokenize`, no BOS/EOS, added tokens recognised)
// and requires identical ids; then requires `skipless detokenize` of those ids
// to equal the JavaScript decode and (without add_prefix_space) the original text.  Prints each
// mismatch, then a summary; exits 1 on any mismatch.
import { spawnSync } from "node:child_process";
import { readFileSync, statSync, openSync, readSync, closeSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const CORPUS = [
  "",
  "Hello world",
  "hello",
  " leading space",
  "trailing spaces   ",
  "  two leading, two trailing  ",
  "The quick brown fox jumps over the lazy dog.",
  "Don't stop: it's what they've done, we'll see, I'm sure you'd agree, they're here.",
  "DON'T SHOUT. 'quoted' and 's alone",
  "Café, naïve, résumé, façade, Ångström, Zürich, São Paulo, Ελληνικά, Русский текст",
  "日本語のテキストと中文文本，还有한국어.",
  "emoji: 🎉🚀 👩‍👩‍👧 ❤️ 🇩🇪 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "tabs\tand\t\ttabs, newlines\nand\n\n\nmore\r\nwindows lines\n",
  "whitespace runs:     five spaces,\u00a0no-break,\u2003em space,\u3000ideographic",
  "digits 0123456789 3.14159 1e-6 2024-11-29 100% ٣٤٥ ⅷ",
  "x=1; y = x**2 + 3*x - 7; print(f\"{y:>8}\") # code",
  "<|endoftext|>",
  "before<|endoftext|>after",
  "text <|endoftext|> with spaces <|endoftext|><|endoftext|>",
  "a <sep> b<sep>c <sep>",
  "<|pad|> padded <|pad|><sep><|endoftext|>",
  "<|endoftext", "<sep", "< sep>", "<|endoftext|",
  "the the the then there these those this that than thin think thing things",
  "Skipless transformers have no skip connections and no normalization.",
  "In the beginning the small model knew nothing; it learned to count 1, 2, 3 and 42.",
  "!!!???...,,,;;;:::---___~~~```@@@###$$$%%%^^^&&&***((()))",
  "mixed123abc456 ABC123 a1b2c3 __init__ snake_case camelCase",
  " ",
  "\n",
  "\t \t ",
  "   \n   ",
];

// Seeded random texts from pieces of every kind the split regex distinguishes
// (letters of several scripts, combining marks, digits and numerals,
// punctuation, contractions, whitespace of several kinds, emoji, added tokens).
// U+0085 and U+FEFF are left out on purpose: tokenizers.js's ByteLevel uses
// JavaScript's \s, which (unlike Oniguruma's, used by the Rust crate and by
// libskipless) includes U+FEFF and misses U+0085.
const PIECES = [
  "a", "Z", "the", " the", "Hello", "é", "e\u0301", "ß", "Ω", "Жж", "日本", "中文", "한", "ا", "ह\u093f",
  "0", "42", " 7", "3.14", "٣", "Ⅻ", "½", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'x",
  " ", "  ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\u2028", "\v", "\f",
  ".", ",", "!?", "...", "-", "_", "(", ")", "\"", "#", "@", "$", "%", "&&", "~", "`", "\\", "/",
  "🎉", "👩‍👩‍👧", "🇩🇪", "❤️", "𝔘", "\u200d", "\u00ad",
  "<|endoftext|>", "<sep>", "<|pad|>", "<", "|", ">", "<|", "|>",
];
function randomTexts(n, seed) {
  let x = BigInt(seed);
  const next = () => {
    x = (x * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    return Number(x >> 33n);
  };
  const out = [];
  for (let i = 0; i < n; i++) {
    const len = 1 + (next() % 12);
    let t = "";
    for (let k = 0; k < len; k++) t += PIECES[next() % PIECES.length];
    out.push(t);
  }
  return out;
}
CORPUS.push(...randomTexts(150, 2026));

function tokenizerText(model) {
  if (statSync(model).isDirectory()) return readFileSync(`${model}/tokenizer.json`, "utf8");
  const fd = openSync(model, "r");
  const len8 = Buffer.alloc(8);
  readSync(fd, len8, 0, 8, 0);
  const n = Number(len8.readBigUInt64LE(0));
  const header = Buffer.alloc(n);
  readSync(fd, header, 0, n, 8);
  closeSync(fd);
  const meta = JSON.parse(header.toString("utf8")).__metadata__ || {};
  if (typeof meta["tokenizer.json"] !== "string") throw new Error(`${model}: no __metadata__ tokenizer.json`);
  return meta["tokenizer.json"];
}

function run(bin, args) {
  const r = spawnSync(bin, args, { encoding: "utf8" });
  if (r.status !== 0) return { error: `exit ${r.status}: ${r.stderr.trim()}` };
  if (!r.stdout.endsWith("\n")) return { error: `output does not end in a newline: ${JSON.stringify(r.stdout)}` };
  return { out: r.stdout.slice(0, -1) };
}

const [bin, ...modelPaths] = process.argv.slice(2);
if (!bin || modelPaths.length === 0) {
  console.error("usage: node compare.mjs PATH/TO/skipless MODEL...");
  process.exit(2);
}
let failures = 0, checks = 0;
const fail = (model, text, what) => {
  failures++;
  console.error(`FAIL ${model} ${JSON.stringify(text)}: ${what}`);
};
for (const model of modelPaths) {
  const json = JSON.parse(tokenizerText(model));
  const tok = new Tokenizer(json, {});
  // With add_prefix_space the decoded text keeps the added spaces (as in HF).
  const prefix = JSON.stringify(json.pre_tokenizer ?? null).includes('"add_prefix_space":true');
  for (const text of CORPUS) {
    checks++;
    const want = tok.encode(text, { add_special_tokens: false }).ids;
    const got = run(bin, ["tokenize", model, "--text", text]);
    if (got.error) { fail(model, text, `tokenize: ${got.error}`); continue; }
    const ids = got.out === "" ? [] : got.out.split(",").map(Number);
    if (ids.join(",") !== want.join(",")) {
      fail(model, text, `ids differ:\n  skipless ${ids.join(",")}\n  js       ${want.join(",")}`);
      continue;
    }
    const dec = run(bin, ["detokenize", model, "--tokens", ids.join(",")]);
    if (dec.error) { fail(model, text, `detokenize: ${dec.error}`); continue; }
    const jsText = ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: false }) : "";
    if (dec.out !== jsText) fail(model, text, `decode differs from js: ${JSON.stringify(dec.out)} vs ${JSON.stringify(jsText)}`);
    else if (!prefix && dec.out !== text) fail(model, text, `round trip gives ${JSON.stringify(dec.out)}`);
  }
}
console.log(`tokenizers: ${checks - failures} of ${checks} texts identical to @huggingface/tokenizers (${modelPaths.length} tokenizers)`);
process.exit(failures ? 1 : 0);
