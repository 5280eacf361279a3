/* tokenizer.c - Hugging Face tokenizer.json: byte-level BPE (GPT-2 family).
 *
 * Supported subset (docs/model-format.md): model.type "BPE" (vocab object,
 * merges as "a b" strings or ["a", "b"] pairs, rank = position), pre-tokenizer
 * ByteLevel with use_regex (alone or as the only member of a Sequence),
 * decoder ByteLevel, no normalizer, post-processor null or ByteLevel, added
 * tokens without lstrip/rstrip/single_word.  A well-formed file outside this
 * subset still loads; every call then fails with SKL_ERR_UNSUPPORTED and the
 * reason.  A malformed one fails the model load with SKL_ERR_TOKENIZER.
 *
 * Encoding follows the Rust `tokenizers` crate step by step:
 *  1. added tokens are cut out of the text, leftmost-longest, first those with
 *     normalized = false, then (in the remaining gaps) those with normalized =
 *     true (the normalizer is the identity here, so only the order differs);
 *  2. each remaining gap gets a leading ' ' when add_prefix_space is set and it
 *     does not start with one, and is split by the GPT-2 regex (PCRE2, UTF +
 *     UCP; \s spelled out as Oniguruma's White_Space set, see SPLIT_PATTERN);
 *  3. each piece's bytes become vocab ids of GPT-2's byte-to-unicode
 *     characters and are merged pairwise by rank: a binary heap of (rank,
 *     position) candidates, lowest rank first, leftmost on ties, stale entries
 *     skipped (the crate's Word::merge_all).  No word cache: the tokenizer is
 *     shared read-only across threads.
 * Decoding maps each token back to bytes (added tokens whose characters are
 * not all byte-level characters give their UTF-8 text) and replaces invalid
 * UTF-8 with U+FFFD per maximal subpart (the WHATWG / from_utf8_lossy rule). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include "json.h"
/* The public calls (skl_tokenize, ...) take the model only to reach its m->tok (and
 * m->path, m->eos_token_id for messages and skl_token_eos): a read of model.h's
 * struct, no call into the model layer. */
#include "model.h"

#include <stdatomic.h>

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* The GPT-2 split regex.  \s is Oniguruma's (the Rust crate's engine) Unicode
 * White_Space: \t-\r, U+0085 and the Z categories; PCRE2's UCP \s lacks U+0085. */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char SPLIT_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

/* ------------------------------------------------------------ hash tables */

/* Open addressing, power-of-two capacity, value -1 = empty slot. */
typedef struct strmap {
    uint32_t cap;
    int32_t *slot; /* token id, or -1 */
} strmap;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < 2 * n) c <<= 1;
    return c;
}

typedef struct pair_entry {
    uint64_t key;    /* (left id << 32) | right id */
    int32_t rank;    /* -1: empty */
    int32_t new_id;
} pair_entry;

struct skl_tok {
    atomic_int refs;
    char *text;          /* tokenizer.json as read (saved verbatim) */
    size_t text_len;
    char *unsupported;   /* NULL: usable; else why not */

    int32_t n;           /* ids 0..n-1 */
    char **str;          /* [n] token text as in the file (byte-level characters) */
    uint32_t *str_len;   /* [n] */
    uint8_t *bytes;      /* decoded bytes of every token, concatenated */
    uint64_t *bytes_off; /* [n + 1] */

    strmap vocab;        /* model vocab string -> id (not added tokens) */
    uint32_t pair_cap;
    pair_entry *pairs;   /* merges */
    int32_t byte_id[256];/* vocab id of the byte-level char of each byte, -1 if absent */

    int32_t n_added;
    int32_t *added;      /* ids of the added tokens, in file order */
    uint8_t *added_normalized; /* [n_added] */
    uint8_t added_first[2][256]; /* [normalized][byte]: some added token starts with it */
    bool add_prefix_space, ignore_merges;
    int32_t endoftext;   /* id of the special "<|endoftext|>", or -1 */
    pcre2_code *re;
};

static int32_t strmap_get(const skl_tok *t, const char *s, size_t n) {
    if (!t->vocab.cap) return -1;
    uint32_t m = t->vocab.cap - 1;
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & m;; i = (i + 1) & m) {
        int32_t id = t->vocab.slot[i];
        if (id < 0) return -1;
        if (t->str_len[id] == n && !memcmp(t->str[id], s, n)) return id;
    }
}

static void strmap_put(skl_tok *t, int32_t id) {
    uint32_t m = t->vocab.cap - 1;
    uint32_t i = (uint32_t)hash_bytes(t->str[id], t->str_len[id]) & m;
    while (t->vocab.slot[i] >= 0) i = (i + 1) & m;
    t->vocab.slot[i] = id;
}

static const pair_entry *pair_get(const skl_tok *t, int32_t a, int32_t b) {
    if (!t->pair_cap) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t m = t->pair_cap - 1;
    for (uint32_t i = (uint32_t)hash_u64(key) & m;; i = (i + 1) & m) {
        const pair_entry *e = &t->pairs[i];
        if (e->rank < 0) return NULL;
        if (e->key == key) return e;
    }
}

/* Insert or overwrite (a later duplicate merge wins, as in the crate's map). */
static void pair_put(skl_tok *t, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t m = t->pair_cap - 1;
    uint32_t i = (uint32_t)hash_u64(key) & m;
    while (t->pairs[i].rank >= 0 && t->pairs[i].key != key) i = (i + 1) & m;
    t->pairs[i].key = key;
    t->pairs[i].rank = rank;
    t->pairs[i].new_id = new_id;
}

/* ------------------------------------------------------ byte <-> unicode */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 to U+0100.. in byte order. */
static bool printable_byte(uint32_t b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

static uint32_t byte_to_cp(int b) {
    if (printable_byte((uint32_t)b)) return (uint32_t)b;
    uint32_t k = 0;
    for (int x = 0; x < b; x++) k += !printable_byte((uint32_t)x);
    return 256u + k;
}

/* Inverse, -1 if cp is not a byte-level character (a pure function: the
 * tokenizer is built concurrently from several threads without locks). */
static int cp_to_byte(uint32_t cp) {
    if (cp < 256) return printable_byte(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    for (int b = 0; b < 256; b++)
        if (!printable_byte((uint32_t)b) && k-- == 0) return b;
    return -1;
}

static size_t put_utf8(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if s[0..n) does
 * not start with one.  With `prefix`, an incomplete but so-far-valid sequence
 * cut off by the end returns -(bytes present). */
static int utf8_seq(const uint8_t *s, size_t n, bool prefix) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) { need = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return prefix ? -i : 0;
        if (s[i] < lo || s[i] > hi) return 0;
        lo = 0x80; hi = 0xbf;
    }
    return need + 1;
}

/* Append the lossy decoding of in[0..n) to out (capacity 3 n + 1 suffices):
 * well-formed sequences copied, each maximal invalid subpart -> U+FFFD.  When
 * !final, an incomplete trailing sequence is left unconsumed; returns the
 * number of bytes consumed. */
static size_t utf8_lossy(const uint8_t *in, size_t n, bool final, char *out, size_t *out_len) {
    size_t i = 0, o = *out_len;
    while (i < n) {
        int k = utf8_seq(in + i, n - i, true);
        if (k > 0) {
            memcpy(out + o, in + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
            continue;
        }
        if (k < 0 && !final) break;
        /* maximal subpart: the lead plus the continuation bytes that were valid */
        size_t skip = 1;
        if (k < 0) skip = (size_t)-k;
        else {
            uint8_t c = in[i];
            if (c >= 0xc2 && c <= 0xf4)
                for (size_t j = 1; j < 4 && i + j < n; j++) {
                    if (utf8_seq(in + i, j + 1, true) != -(int)(j + 1)) break;
                    skip = j + 1;
                }
        }
        o += put_utf8(0xfffd, out + o);
        i += skip;
    }
    out[o] = '\0';
    *out_len = o;
    return i;
}

/* ------------------------------------------------------------------ load */

static void tok_free(skl_tok *t) {
    if (!t) return;
    if (t->str)
        for (int32_t i = 0; i < t->n; i++) free(t->str[i]);
    free(t->str);
    free(t->str_len);
    free(t->bytes);
    free(t->bytes_off);
    free(t->vocab.slot);
    free(t->pairs);
    free(t->added);
    free(t->added_normalized);
    if (t->re) pcre2_code_free(t->re);
    free(t->unsupported);
    free(t->text);
    free(t);
}

skl_tok *skl_tok_retain(skl_tok *t) {
    if (t) atomic_fetch_add(&t->refs, 1);
    return t;
}

void skl_tok_release(skl_tok *t) {
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) tok_free(t);
}

const char *skl_tok_text(const skl_tok *t, size_t *len) {
    *len = t->text_len;
    return t->text;
}

/* A well-formed but unsupported feature: remember why (first reason wins). */
static int unsupported(skl_tok *t, const char *what, const char *fmt, const char *detail) {
    if (t->unsupported) return SKL_OK;
    char msg[512];
    size_t k = (size_t)snprintf(msg, sizeof msg, "%s: unsupported ", what);
    if (k < sizeof msg) snprintf(msg + k, sizeof msg - k, fmt, detail);
    t->unsupported = strdup(msg);
    return t->unsupported ? SKL_OK : skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
}

static const char *type_of(const json_t *o) {
    const json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* o[key] must be absent, null, or `want` (a JSON boolean). */
static bool bool_is(const json_t *o, const char *key, bool want, bool absent_ok) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return absent_ok;
    return json_is_boolean(v) && json_is_true(v) == want;
}

static bool empty_or_null_str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

/* A component object (normalizer, pre_tokenizer, ...) must be null or an
 * object with a string "type". */
static int component(const json_t *root, const char *key, const char *what, const json_t **out) {
    const json_t *c = json_object_get(root, key);
    *out = NULL;
    if (!c || json_is_null(c)) return SKL_OK;
    if (!json_is_object(c) || !type_of(c))
        return skl_fail(SKL_ERR_TOKENIZER, "%s: \"%s\" must be null or an object with a string \"type\"", what, key);
    *out = c;
    return SKL_OK;
}

/* obj[key]: absent or null (false), or a boolean; `label` names it in the message. */
static int opt_bool(const json_t *obj, const char *key, const char *what, const char *label, bool *out) {
    const json_t *v = json_object_get(obj, key);
    if (v && !json_is_null(v) && !json_is_boolean(v))
        return skl_fail(SKL_ERR_TOKENIZER, "%s: %s must be true or false", what, label);
    *out = v && json_is_true(v);
    return SKL_OK;
}

static int check_byte_level(skl_tok *t, const json_t *bl, const char *what) {
    if (!bool_is(bl, "use_regex", true, true))
        return unsupported(t, what, "pre-tokenizer ByteLevel with use_regex %s", "false");
    return opt_bool(bl, "add_prefix_space", what, "pre_tokenizer ByteLevel \"add_prefix_space\"", &t->add_prefix_space);
}

static int parse_pipeline(skl_tok *t, const json_t *root, const char *what) {
    const json_t *norm, *pre, *post, *dec;
    int rc;
    if ((rc = component(root, "normalizer", what, &norm)) || (rc = component(root, "pre_tokenizer", what, &pre)) ||
        (rc = component(root, "post_processor", what, &post)) || (rc = component(root, "decoder", what, &dec)))
        return rc;
    if (norm && (rc = unsupported(t, what, "normalizer %s", type_of(norm)))) return rc;
    if (!pre) {
        if ((rc = unsupported(t, what, "pre-tokenizer %s", "null"))) return rc;
    } else if (!strcmp(type_of(pre), "ByteLevel")) {
        if ((rc = check_byte_level(t, pre, what))) return rc;
    } else if (!strcmp(type_of(pre), "Sequence")) {
        const json_t *list = json_object_get(pre, "pretokenizers");
        if (!json_is_array(list))
            return skl_fail(SKL_ERR_TOKENIZER, "%s: pre_tokenizer Sequence needs a \"pretokenizers\" list", what);
        for (size_t i = 0; i < json_array_size(list); i++)
            if (!json_is_object(json_array_get(list, i)) || !type_of(json_array_get(list, i)))
                return skl_fail(SKL_ERR_TOKENIZER, "%s: pre_tokenizer Sequence entry %zu is not an object with a \"type\"",
                                what, i);
        const json_t *only = json_array_size(list) == 1 ? json_array_get(list, 0) : NULL;
        if (only && !strcmp(type_of(only), "ByteLevel")) {
            if ((rc = check_byte_level(t, only, what))) return rc;
        } else if ((rc = unsupported(t, what, "pre-tokenizer %s (only a Sequence holding exactly one ByteLevel)",
                                     "Sequence")))
            return rc;
    } else if ((rc = unsupported(t, what, "pre-tokenizer %s", type_of(pre)))) return rc;
    if (post && strcmp(type_of(post), "ByteLevel") && (rc = unsupported(t, what, "post-processor %s", type_of(post))))
        return rc;
    if (!dec) {
        if ((rc = unsupported(t, what, "decoder %s", "null"))) return rc;
    } else if (strcmp(type_of(dec), "ByteLevel") && (rc = unsupported(t, what, "decoder %s", type_of(dec))))
        return rc;
    const json_t *tr = json_object_get(root, "truncation"), *pad = json_object_get(root, "padding");
    if (tr && !json_is_null(tr) && (rc = unsupported(t, what, "%s (must be null)", "truncation"))) return rc;
    if (pad && !json_is_null(pad) && (rc = unsupported(t, what, "%s (must be null)", "padding"))) return rc;
    return SKL_OK;
}

/* Set id's text; duplicate ids are malformed. */
static int set_token(skl_tok *t, int32_t id, const char *s, size_t len, const char *what, const char *where) {
    if (t->str[id])
        return skl_fail(SKL_ERR_TOKENIZER, "%s: %s: id %d is used twice (\"%s\" and \"%s\")", what, where, id,
                        t->str[id], s);
    t->str[id] = malloc(len + 1);
    if (!t->str[id]) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    memcpy(t->str[id], s, len);
    t->str[id][len] = '\0';
    t->str_len[id] = (uint32_t)len;
    return SKL_OK;
}

static int get_id(const json_t *v, int64_t limit, int32_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= limit) return -1;
    *out = (int32_t)json_integer_value(v);
    return 0;
}

#define MAX_TOKENS (1 << 24)

static int parse_merges(skl_tok *t, const json_t *merges, const char *what) {
    size_t nm = json_array_size(merges);
    if (nm > (size_t)MAX_TOKENS) return skl_fail(SKL_ERR_TOKENIZER, "%s: %zu merges (at most %d)", what, nm, MAX_TOKENS);
    t->pair_cap = pow2_at_least(nm);
    t->pairs = malloc(t->pair_cap * sizeof *t->pairs);
    if (!t->pairs) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    for (uint32_t i = 0; i < t->pair_cap; i++) t->pairs[i].rank = -1;
    char *buf = NULL;
    size_t cap = 0;
    int rc = SKL_OK;
    for (size_t r = 0; r < nm && !rc; r++) {
        const json_t *m = json_array_get(merges, r);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) { /* "a b": exactly one space */
            a = json_string_value(m);
            const char *sp = memchr(a, ' ', json_string_length(m));
            if (!sp || memchr(sp + 1, ' ', json_string_length(m) - (size_t)(sp + 1 - a))) {
                rc = skl_fail(SKL_ERR_TOKENIZER, "%s: model.merges[%zu] \"%s\" is not two tokens separated by one space",
                              what, r, a);
                break;
            }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = json_string_length(m) - la - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            lb = json_string_length(json_array_get(m, 1));
        } else {
            rc = skl_fail(SKL_ERR_TOKENIZER, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", what, r);
            break;
        }
        int32_t ia = strmap_get(t, a, la), ib = strmap_get(t, b, lb);
        if (la + lb + 1 > cap) {
            cap = la + lb + 64;
            char *nb = realloc(buf, cap);
            if (!nb) { rc = skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what); break; }
            buf = nb;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t ic = strmap_get(t, buf, la + lb);
        if (ia < 0 || ib < 0 || ic < 0) {
            buf[la + lb] = '\0';
            rc = skl_fail(SKL_ERR_TOKENIZER, "%s: model.merges[%zu]: token \"%.*s\" is not in the vocab", what, r,
                          ia < 0 ? (int)la : ib < 0 ? (int)lb : (int)(la + lb), ia < 0 ? a : ib < 0 ? b : buf);
            break;
        }
        pair_put(t, ia, ib, (int32_t)r, ic);
    }
    free(buf);
    return rc;
}

static int parse_model(skl_tok *t, const json_t *root, const char *what, const json_t **vocab_out) {
    const json_t *model = json_object_get(root, "model");
    *vocab_out = NULL;
    if (!json_is_object(model) || !type_of(model))
        return skl_fail(SKL_ERR_TOKENIZER, "%s: \"model\" missing or not an object with a string \"type\"", what);
    if (strcmp(type_of(model), "BPE")) return unsupported(t, what, "model type %s", type_of(model));
    const json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return skl_fail(SKL_ERR_TOKENIZER, "%s: model.vocab missing or not an object", what);
    if (!json_is_array(merges)) return skl_fail(SKL_ERR_TOKENIZER, "%s: model.merges missing or not a list", what);
    *vocab_out = vocab;
    int rc;
    const json_t *dropout = json_object_get(model, "dropout"), *unk = json_object_get(model, "unk_token");
    if (dropout && !json_is_null(dropout) && (rc = unsupported(t, what, "BPE %s", "dropout"))) return rc;
    if (unk && !json_is_null(unk) && (rc = unsupported(t, what, "BPE %s (must be null)", "unk_token"))) return rc;
    if (!empty_or_null_str(model, "continuing_subword_prefix") &&
        (rc = unsupported(t, what, "BPE %s", "continuing_subword_prefix")))
        return rc;
    if (!empty_or_null_str(model, "end_of_word_suffix") && (rc = unsupported(t, what, "BPE %s", "end_of_word_suffix")))
        return rc;
    if (!bool_is(model, "byte_fallback", false, true) && (rc = unsupported(t, what, "BPE %s", "byte_fallback")))
        return rc;
    return opt_bool(model, "ignore_merges", what, "model.ignore_merges", &t->ignore_merges);
}

static int parse_added(skl_tok *t, const json_t *added, const char *what) {
    size_t na = json_array_size(added);
    t->added = malloc((na ? na : 1) * sizeof *t->added);
    t->added_normalized = malloc(na ? na : 1);
    if (!t->added || !t->added_normalized) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    int rc;
    for (size_t i = 0; i < na; i++) {
        const json_t *a = json_array_get(added, i);
        const json_t *content = json_object_get(a, "content");
        int32_t id;
        if (!json_is_object(a) || !json_is_string(content) || json_string_length(content) == 0 ||
            get_id(json_object_get(a, "id"), t->n, &id))
            return skl_fail(SKL_ERR_TOKENIZER,
                            "%s: added_tokens[%zu] needs a non-empty string \"content\" and an integer \"id\" in [0, %d)",
                            what, i, t->n);
        const char *c = json_string_value(content);
        size_t len = json_string_length(content);
        const char *flags[] = {"special", "normalized", "lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 5; k++) {
            const json_t *f = json_object_get(a, flags[k]);
            if (f && !json_is_null(f) && !json_is_boolean(f))
                return skl_fail(SKL_ERR_TOKENIZER, "%s: added_tokens[%zu] \"%s\" must be true or false", what, i, flags[k]);
            if (k >= 2 && json_is_true(f)) {
                char d[96];
                snprintf(d, sizeof d, "%s (added token \"%.40s\")", flags[k], c);
                if ((rc = unsupported(t, what, "added-token option %s", d))) return rc;
            }
        }
        bool special = json_is_true(json_object_get(a, "special"));
        const json_t *nz = json_object_get(a, "normalized");
        /* HF default: normalized = !special */
        t->added_normalized[i] = (uint8_t)((!nz || json_is_null(nz)) ? !special : json_is_true(nz));
        /* Same id as a vocab entry: fine if the same text (GPT-2's <|endoftext|>). */
        int32_t in_vocab = strmap_get(t, c, len);
        if (in_vocab >= 0 && in_vocab != id)
            return skl_fail(SKL_ERR_TOKENIZER, "%s: added_tokens[%zu] \"%s\" has id %d but the vocab gives it id %d",
                            what, i, c, id, in_vocab);
        for (int32_t j = 0; j < t->n_added; j++)
            if (t->str_len[t->added[j]] == len && !memcmp(t->str[t->added[j]], c, len))
                return skl_fail(SKL_ERR_TOKENIZER, "%s: added_tokens[%zu] \"%s\" is listed twice", what, i, c);
        if (in_vocab < 0 && (rc = set_token(t, id, c, len, what, "added_tokens"))) return rc;
        for (int32_t j = 0; j < t->n_added; j++)
            if (t->added[j] == id)
                return skl_fail(SKL_ERR_TOKENIZER, "%s: added_tokens: id %d is used twice", what, id);
        t->added[t->n_added++] = id;
        t->added_first[t->added_normalized[i]][(uint8_t)c[0]] = 1;
        if (special && len == 13 && !memcmp(c, "<|endoftext|>", 13)) t->endoftext = id;
    }
    return SKL_OK;
}

/* Decoded bytes of every token: byte-level characters -> bytes; a token with
 * any other character -> its UTF-8 text (the crate's ByteLevel decoder). */
static int build_bytes(skl_tok *t, const char *what) {
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n; i++) total += t->str_len[i];
    t->bytes = malloc(total ? total : 1);
    t->bytes_off = malloc(((size_t)t->n + 1) * sizeof *t->bytes_off);
    if (!t->bytes || !t->bytes_off) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    uint64_t o = 0;
    for (int32_t i = 0; i < t->n; i++) {
        t->bytes_off[i] = o;
        const uint8_t *s = (const uint8_t *)t->str[i];
        size_t n = t->str_len[i], k = 0;
        uint64_t start = o;
        bool mapped = true;
        while (k < n) {
            int len = utf8_seq(s + k, n - k, false); /* jansson strings are valid UTF-8 */
            uint32_t cp = len == 1 ? s[k] : len == 2 ? (uint32_t)(s[k] & 0x1f) << 6 | (s[k + 1] & 0x3f) : 0xffffffffu;
            int b = cp_to_byte(cp);
            if (b < 0) { mapped = false; break; }
            t->bytes[o++] = (uint8_t)b;
            k += (size_t)len;
        }
        if (!mapped) {
            memcpy(t->bytes + start, s, n);
            o = start + n;
        }
    }
    t->bytes_off[t->n] = o;
    return SKL_OK;
}

static int build(skl_tok *t, const json_t *root, const char *what) {
    if (!json_is_object(root)) return skl_fail(SKL_ERR_TOKENIZER, "%s: not a JSON object", what);
    int rc;
    const json_t *vocab;
    if ((rc = parse_model(t, root, what, &vocab)) || (rc = parse_pipeline(t, root, what))) return rc;
    const json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return skl_fail(SKL_ERR_TOKENIZER, "%s: \"added_tokens\" must be a list", what);
    if (!vocab) return SKL_OK; /* unsupported model type: nothing more to read */
    size_t nv = json_object_size(vocab), na = added ? json_array_size(added) : 0;
    if (nv + na > (size_t)MAX_TOKENS)
        return skl_fail(SKL_ERR_TOKENIZER, "%s: %zu tokens (at most %d)", what, nv + na, MAX_TOKENS);
    /* ids must be dense: the largest id + 1 = number of distinct ids */
    int64_t max_id = -1;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        int32_t id;
        if (get_id(val, MAX_TOKENS, &id))
            return skl_fail(SKL_ERR_TOKENIZER, "%s: model.vocab[\"%s\"] is not an integer id in [0, %d)", what, key,
                            MAX_TOKENS);
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < na; i++) {
        const json_t *id = json_object_get(json_array_get(added, i), "id");
        if (json_is_integer(id) && json_integer_value(id) > max_id && json_integer_value(id) < MAX_TOKENS)
            max_id = json_integer_value(id);
    }
    t->n = (int32_t)(max_id + 1);
    t->str = calloc((size_t)t->n + 1, sizeof *t->str);
    t->str_len = calloc((size_t)t->n + 1, sizeof *t->str_len);
    t->vocab.cap = pow2_at_least(nv);
    t->vocab.slot = malloc(t->vocab.cap * sizeof *t->vocab.slot);
    if (!t->str || !t->str_len || !t->vocab.slot) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    for (uint32_t i = 0; i < t->vocab.cap; i++) t->vocab.slot[i] = -1;
    json_object_foreach((json_t *)vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if ((rc = set_token(t, id, key, strlen(key), what, "model.vocab"))) return rc;
        strmap_put(t, id);
    }
    t->endoftext = -1;
    if ((rc = parse_merges(t, json_object_get(json_object_get(root, "model"), "merges"), what))) return rc;
    if (added && (rc = parse_added(t, added, what))) return rc;
    for (int32_t i = 0; i < t->n; i++)
        if (!t->str[i])
            return skl_fail(SKL_ERR_TOKENIZER, "%s: token ids are not dense: id %d is missing (ids go up to %d)", what,
                            i, t->n - 1);
    for (int b = 0; b < 256; b++) {
        char c[4];
        t->byte_id[b] = strmap_get(t, c, put_utf8(byte_to_cp(b), c));
    }
    if ((rc = build_bytes(t, what))) return rc;
    if (t->unsupported) return SKL_OK;
    int err;
    PCRE2_SIZE off;
    t->re = pcre2_compile((PCRE2_SPTR)SPLIT_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!t->re) return skl_fail(SKL_ERR_NOMEM, "%s: cannot compile the split regex (PCRE2 error %d)", what, err);
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter is used if it fails */
    return SKL_OK;
}

int skl_tok_load(const char *text, size_t len, const char *what, skl_tok **out) {
    *out = NULL;
    json_t *root;
    int rc = skl_json_parse(text, len, what, &root);
    if (rc) return rc;
    skl_tok *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(root);
        return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    }
    atomic_init(&t->refs, 1);
    t->endoftext = -1;
    t->text = malloc(len + 1);
    if (!t->text) rc = skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    else {
        memcpy(t->text, text, len);
        t->text[len] = '\0';
        t->text_len = len;
        rc = build(t, root, what);
    }
    json_decref(root);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return SKL_OK;
}

/* --------------------------------------------------------------- encoding */

typedef struct ids_out {
    int32_t *tokens;
    size_t n_max, n;
} ids_out;

static void emit(ids_out *o, int32_t id) {
    if (o->n < o->n_max) o->tokens[o->n] = id;
    o->n++;
}

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* neighbours in the list, -1 at the ends */
    int32_t len;        /* 0: merged away */
} sym;

typedef struct cand {
    int32_t rank, pos, new_id;
} cand;

static bool cand_less(const cand *a, const cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (l + 1 < *n && cand_less(&h[l + 1], best)) m = l + 1;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

typedef struct scratch {
    sym *syms;
    cand *heap;
    char *chars; /* byte-level text of a piece (ignore_merges lookup) */
    size_t cap;
} scratch;

static int scratch_fit(scratch *s, size_t n) {
    if (n <= s->cap) return 0;
    size_t cap = n + n / 2 + 16;
    sym *a = realloc(s->syms, cap * sizeof *a);
    if (a) s->syms = a;
    cand *b = realloc(s->heap, 2 * cap * sizeof *b); /* each merge pushes at most 2 */
    if (b) s->heap = b;
    char *c = realloc(s->chars, 2 * cap);
    if (c) s->chars = c;
    if (!a || !b || !c) return -1;
    s->cap = cap;
    return 0;
}

static void try_pair(const skl_tok *t, scratch *s, size_t *nh, int32_t pos) {
    int32_t nx = s->syms[pos].next;
    if (nx < 0) return;
    const pair_entry *e = pair_get(t, s->syms[pos].id, s->syms[nx].id);
    if (e) heap_push(s->heap, nh, (cand){e->rank, pos, e->new_id});
}

/* BPE of one pre-token (raw bytes). */
static int bpe_piece(const skl_tok *t, const uint8_t *p, size_t n, scratch *s, ids_out *o) {
    if (scratch_fit(s, n)) return skl_fail(SKL_ERR_NOMEM, "skl_tokenize: out of memory");
    if (t->ignore_merges) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += put_utf8(byte_to_cp(p[i]), s->chars + k);
        int32_t id = strmap_get(t, s->chars, k);
        if (id >= 0) {
            emit(o, id);
            return SKL_OK;
        }
    }
    int32_t m = 0; /* bytes whose character is not in the vocab are dropped, as the crate does without unk_token */
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0) continue;
        s->syms[m] = (sym){id, m - 1, -1, 1};
        if (m > 0) s->syms[m - 1].next = m;
        m++;
    }
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < m; i++) try_pair(t, s, &nh, i);
    while (nh) {
        cand c = heap_pop(s->heap, &nh);
        sym *a = &s->syms[c.pos];
        if (!a->len || a->next < 0) continue;
        sym *b = &s->syms[a->next];
        const pair_entry *e = pair_get(t, a->id, b->id);
        if (!e || e->new_id != c.new_id) continue; /* stale: a neighbour changed */
        a->id = c.new_id;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = c.pos;
        if (a->prev >= 0) try_pair(t, s, &nh, a->prev);
        try_pair(t, s, &nh, c.pos);
    }
    for (int32_t i = 0; i < m && i >= 0; i = s->syms[i].next) emit(o, s->syms[i].id);
    return SKL_OK;
}

/* Pre-tokenize and BPE a gap between added tokens. */
static int encode_gap(const skl_tok *t, const char *text, size_t n, pcre2_match_data *md, scratch *s, ids_out *o,
                      char **pref, size_t *pref_cap) {
    if (n == 0) return SKL_OK;
    const char *x = text;
    if (t->add_prefix_space && text[0] != ' ') {
        if (n + 1 > *pref_cap) {
            char *nb = realloc(*pref, n + 1);
            if (!nb) return skl_fail(SKL_ERR_NOMEM, "skl_tokenize: out of memory");
            *pref = nb;
            *pref_cap = n + 1;
        }
        (*pref)[0] = ' ';
        memcpy(*pref + 1, text, n);
        x = *pref;
        n++;
    }
    PCRE2_SIZE pos = 0;
    while (pos < n) {
        int r = pcre2_match(t->re, (PCRE2_SPTR)x, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (r == PCRE2_ERROR_NOMATCH) break; /* cannot happen: \s+ and [^\s\p{L}\p{N}]+ cover everything */
        if (r < 0) return skl_fail(SKL_ERR_NOMEM, "skl_tokenize: PCRE2 match error %d", r);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        int rc = bpe_piece(t, (const uint8_t *)x + ov[0], ov[1] - ov[0], s, o);
        if (rc) return rc;
        pos = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    return SKL_OK;
}

/* Leftmost-longest added token of the given normalized class starting at or
 * after `from`; returns its index into t->added or -1, *at its offset. */
static int32_t find_added(const skl_tok *t, const char *text, size_t n, size_t from, bool normalized, size_t *at) {
    for (size_t i = from; i < n; i++) {
        if (!t->added_first[normalized][(uint8_t)text[i]]) continue;
        int32_t best = -1;
        uint32_t best_len = 0;
        for (int32_t k = 0; k < t->n_added; k++) {
            if (t->added_normalized[k] != normalized) continue;
            int32_t id = t->added[k];
            uint32_t l = t->str_len[id];
            if (l > best_len && l <= n - i && (uint8_t)t->str[id][0] == (uint8_t)text[i] && !memcmp(t->str[id], text + i, l)) {
                best = k;
                best_len = l;
            }
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

typedef struct enc {
    const skl_tok *t;
    pcre2_match_data *md;
    scratch s;
    ids_out o;
    char *pref;
    size_t pref_cap;
    bool plain;
} enc;

/* Split [text, text+n) on added tokens of one class, recursing into the gaps
 * with the next class (non-normalized first, then normalized, then BPE). */
static int split_added(enc *e, const char *text, size_t n, int pass) {
    if (pass == 2 || e->plain || e->t->n_added == 0)
        return encode_gap(e->t, text, n, e->md, &e->s, &e->o, &e->pref, &e->pref_cap);
    size_t pos = 0, at;
    int32_t k;
    int rc;
    while ((k = find_added(e->t, text, n, pos, pass == 1, &at)) >= 0) {
        if ((rc = split_added(e, text + pos, at - pos, pass + 1))) return rc;
        int32_t id = e->t->added[k];
        emit(&e->o, id);
        pos = at + e->t->str_len[id];
    }
    return split_added(e, text + pos, n - pos, pass + 1);
}

static int usable(const skl_model *m, const char *fn) {
    if (!m) return skl_fail(SKL_ERR_INVALID_ARG, "%s: model is NULL", fn);
    if (!m->tok) return skl_fail(SKL_ERR_NO_TOKENIZER, "%s: %s has no tokenizer (no tokenizer.json)", fn, m->path);
    if (m->tok->unsupported) return skl_fail(SKL_ERR_UNSUPPORTED, "%s", m->tok->unsupported);
    return SKL_OK;
}

int skl_tokenize(const skl_model *m, const char *text, size_t text_len, int32_t *tokens, size_t n_max,
                 size_t *n_tokens, unsigned flags) {
    int rc = usable(m, "skl_tokenize");
    if (rc) return rc;
    if (!n_tokens || (!text && text_len) || (!tokens && n_max))
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_tokenize: NULL text, tokens or n_tokens");
    if (flags & ~SKL_TOKENIZE_PLAIN) return skl_fail(SKL_ERR_INVALID_ARG, "skl_tokenize: unknown flags 0x%x", flags);
    if (text_len > (size_t)1 << 30) /* piece positions are int32_t */
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_tokenize: text of %zu bytes is longer than 1 GiB", text_len);
    *n_tokens = 0;
    for (size_t i = 0; i < text_len;) {
        int k = utf8_seq((const uint8_t *)text + i, text_len - i, false);
        if (k <= 0)
            return skl_fail(SKL_ERR_INVALID_ARG, "skl_tokenize: invalid UTF-8 at byte offset %zu (byte 0x%02x)", i,
                            (uint8_t)text[i]);
        i += (size_t)k;
    }
    enc e = {.t = m->tok, .o = {tokens, n_max, 0}, .plain = (flags & SKL_TOKENIZE_PLAIN) != 0};
    e.md = pcre2_match_data_create_from_pattern(m->tok->re, NULL);
    if (!e.md) return skl_fail(SKL_ERR_NOMEM, "skl_tokenize: out of memory");
    rc = split_added(&e, text_len ? text : "", text_len, 0);
    pcre2_match_data_free(e.md);
    free(e.s.syms);
    free(e.s.heap);
    free(e.s.chars);
    free(e.pref);
    if (rc) return rc;
    *n_tokens = e.o.n;
    if (e.o.n > n_max)
        return skl_fail(SKL_ERR_BUFFER_TOO_SMALL, "skl_tokenize: %zu tokens do not fit in a buffer of %zu", e.o.n, n_max);
    return SKL_OK;
}

/* --------------------------------------------------------------- decoding */

bool skl_model_has_tokenizer(const skl_model *m) { return m && m->tok && !m->tok->unsupported; }

int32_t skl_tokenizer_size(const skl_model *m) { return skl_model_has_tokenizer(m) ? m->tok->n : 0; }

int32_t skl_token_eos(const skl_model *m) {
    if (!m) return -1;
    if (m->eos_token_id >= 0) return m->eos_token_id;
    return skl_model_has_tokenizer(m) ? m->tok->endoftext : -1;
}

static int check_ids(const skl_tok *t, const char *fn, const int32_t *tokens, size_t n, uint64_t *bytes) {
    uint64_t b = 0;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= t->n)
            return skl_fail(SKL_ERR_TOKEN, "%s: token %zu is id %d, outside the tokenizer's [0, %d)", fn, i, tokens[i],
                            t->n);
        b += t->bytes_off[tokens[i] + 1] - t->bytes_off[tokens[i]];
    }
    *bytes = b;
    return SKL_OK;
}

int skl_detokenize(const skl_model *m, const int32_t *tokens, size_t n_tokens, char *text, size_t text_cap,
                   size_t *text_len) {
    int rc = usable(m, "skl_detokenize");
    if (rc) return rc;
    if (!text_len || (!tokens && n_tokens) || (!text && text_cap))
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_detokenize: NULL tokens, text or text_len");
    const skl_tok *t = m->tok;
    uint64_t nb = 0;
    if ((rc = check_ids(t, "skl_detokenize", tokens, n_tokens, &nb))) return rc;
    if (nb > SIZE_MAX / 4) return skl_fail(SKL_ERR_NOMEM, "skl_detokenize: output too large");
    uint8_t *raw = malloc(nb ? nb : 1);
    char *out = malloc(3 * nb + 1); /* each byte becomes at most one U+FFFD */
    if (!raw || !out) {
        free(raw);
        free(out);
        return skl_fail(SKL_ERR_NOMEM, "skl_detokenize: out of memory");
    }
    size_t k = 0, len = 0;
    for (size_t i = 0; i < n_tokens; i++) {
        uint64_t a = t->bytes_off[tokens[i]], b = t->bytes_off[tokens[i] + 1];
        memcpy(raw + k, t->bytes + a, b - a);
        k += b - a;
    }
    utf8_lossy(raw, k, true, out, &len);
    free(raw);
    *text_len = len;
    if (text_cap < len + 1) rc = skl_fail(SKL_ERR_BUFFER_TOO_SMALL, "skl_detokenize: text of %zu bytes + NUL does not fit in %zu",
                                          len, text_cap);
    else memcpy(text, out, len + 1);
    free(out);
    return rc;
}

struct skl_detokenizer {
    const skl_tok *t;
    uint8_t pending[4]; /* bytes of an unfinished character (at most 3) */
    size_t n_pending;
    char *piece;
    size_t cap;
};

int skl_detokenizer_create(const skl_model *m, skl_detokenizer **out) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_detokenizer_create: out is NULL");
    *out = NULL;
    int rc = usable(m, "skl_detokenizer_create");
    if (rc) return rc;
    skl_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return skl_fail(SKL_ERR_NOMEM, "skl_detokenizer_create: out of memory");
    d->t = m->tok;
    *out = d;
    return SKL_OK;
}

void skl_detokenizer_free(skl_detokenizer *d) {
    if (!d) return;
    free(d->piece);
    free(d);
}

/* Decode pending + the token's bytes; keep back an unfinished character. */
static int detok_step(skl_detokenizer *d, const uint8_t *b, size_t nb, bool final, const char **piece,
                      size_t *piece_len) {
    size_t n = d->n_pending + nb;
    if (3 * n + 1 > d->cap) {
        char *p = realloc(d->piece, 3 * n + 1);
        if (!p) return skl_fail(SKL_ERR_NOMEM, "skl_detokenizer: out of memory");
        d->piece = p;
        d->cap = 3 * n + 1;
    }
    uint8_t *all = malloc(n ? n : 1);
    if (!all) return skl_fail(SKL_ERR_NOMEM, "skl_detokenizer: out of memory");
    memcpy(all, d->pending, d->n_pending);
    if (nb) memcpy(all + d->n_pending, b, nb);
    size_t len = 0, used = utf8_lossy(all, n, final, d->piece, &len);
    d->n_pending = n - used; /* < 4: only an incomplete sequence is left */
    memcpy(d->pending, all + used, d->n_pending);
    free(all);
    *piece = d->piece;
    if (piece_len) *piece_len = len;
    return SKL_OK;
}

int skl_detokenizer_push(skl_detokenizer *d, int32_t token, const char **piece, size_t *piece_len) {
    if (!d || !piece) return skl_fail(SKL_ERR_INVALID_ARG, "skl_detokenizer_push: NULL decoder or piece");
    uint64_t nb = 0;
    int rc = check_ids(d->t, "skl_detokenizer_push", &token, 1, &nb);
    if (rc) return rc;
    return detok_step(d, d->t->bytes + d->t->bytes_off[token], (size_t)nb, false, piece, piece_len);
}

int skl_detokenizer_flush(skl_detokenizer *d, const char **piece, size_t *piece_len) {
    if (!d || !piece) return skl_fail(SKL_ERR_INVALID_ARG, "skl_detokenizer_flush: NULL decoder or piece");
    return detok_step(d, NULL, 0, true, piece, piece_len);
}
