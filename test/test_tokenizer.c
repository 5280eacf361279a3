/* test_tokenizer.c - tokenizer.json loading, errors, encode/decode protocols,
 * the streaming decoder, generate's pieces, save/reload and merge.
 *
 * The token ids themselves are compared with @huggingface/tokenizers by
 * test/tokenizers_js/compare.mjs; here the byte-level ids a test needs are
 * looked up in the tokenizer.json file with jansson, not taken from the
 * library. */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ----------------------------------------------------------------- helpers */

/* The entry `name` of tokenizers.json (written by test/tokenizers.py). */
static json_t *tok_entry(const char *name) {
    json_error_t err;
    json_t *all = json_load_file(test_path("tokenizers.json"), 0, &err);
    ck_assert_msg(all != NULL, "cannot read %s: %s", test_path("tokenizers.json"), err.text);
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *e = json_array_get(all, i);
        if (!strcmp(json_string_value(json_object_get(e, "name")), name)) {
            json_incref(e);
            json_decref(all);
            return e;
        }
    }
    ck_abort_msg("tokenizers.json has no %s", name);
    return NULL;
}

static char *entry_path(const json_t *e, const char *key) {
    return strdup(test_path(json_string_value(json_object_get(e, key))));
}

/* The model path of tokenizer entry `name` (malloc'd). */
static char *tok_model_path(const char *name) {
    json_t *e = tok_entry(name);
    char *p = entry_path(e, "model");
    json_decref(e);
    return p;
}

static skl_model *load_tok_model(const char *name) {
    json_t *e = tok_entry(name);
    char *p = entry_path(e, "model");
    skl_model *m = NULL;
    int rc = skl_model_load(p, NULL, &m);
    ck_assert_msg(rc == SKL_OK, "%s: %s", p, skl_last_error());
    free(p);
    json_decref(e);
    return m;
}

/* The parsed tokenizer.json of a test tokenizer. */
static json_t *tok_json(const char *name) {
    json_t *e = tok_entry(name);
    char *p = entry_path(e, "tokenizer");
    json_error_t err;
    json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(j != NULL, "%s: %s", p, err.text);
    free(p);
    json_decref(e);
    return j;
}

/* The id of byte b's GPT-2 character in the file's vocab. */
static int32_t byte_token(const json_t *tj, int b) {
    int k = 0, cp = b;
    bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    if (!printable) {
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) k++;
        cp = 256 + k;
    }
    char s[4] = {0};
    if (cp < 0x80) s[0] = (char)cp;
    else {
        s[0] = (char)(0xc0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3f));
    }
    const json_t *id = json_object_get(json_object_get(json_object_get(tj, "model"), "vocab"), s);
    ck_assert_msg(json_is_integer(id), "byte 0x%02x has no token", b);
    return (int32_t)json_integer_value(id);
}

static int32_t added_id(const json_t *tj, const char *content) {
    const json_t *a = json_object_get(tj, "added_tokens");
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(a, i), "content")), content))
            return (int32_t)json_integer_value(json_object_get(json_array_get(a, i), "id"));
    ck_abort_msg("no added token %s", content);
    return -1;
}

/* Tokenize into a malloc'd array (asserts success). */
static int32_t *tokenize(const skl_model *m, const char *text, size_t len, unsigned flags, size_t *n) {
    size_t need = 0;
    int rc = skl_tokenize(m, text, len, NULL, 0, &need, flags);
    ck_assert_msg(rc == SKL_OK || rc == SKL_ERR_BUFFER_TOO_SMALL, "%s", skl_last_error());
    int32_t *t = malloc((need + 1) * sizeof *t);
    ck_assert_int_eq(skl_tokenize(m, text, len, t, need, n, flags), SKL_OK);
    ck_assert_uint_eq(*n, need);
    return t;
}

/* Detokenize into a malloc'd string (asserts success). */
static char *detokenize(const skl_model *m, const int32_t *t, size_t n, size_t *len) {
    size_t need = 0;
    int rc = skl_detokenize(m, t, n, NULL, 0, &need);
    ck_assert_int_eq(rc, SKL_ERR_BUFFER_TOO_SMALL);
    char *s = malloc(need + 1);
    ck_assert_int_eq(skl_detokenize(m, t, n, s, need + 1, len), SKL_OK);
    ck_assert_uint_eq(*len, need);
    ck_assert_int_eq(s[need], '\0');
    return s;
}

/* Is s[0..n) well-formed UTF-8 (test's own check, RFC 3629 table)? */
static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) k = 1;
        else if (c == 0xe0) { k = 2; lo = 0xa0; }
        else if (c == 0xed) { k = 2; hi = 0x9f; }
        else if (c >= 0xe1 && c <= 0xef) k = 2;
        else if (c == 0xf0) { k = 3; lo = 0x90; }
        else if (c == 0xf4) { k = 3; hi = 0x8f; }
        else if (c >= 0xf1 && c <= 0xf3) k = 3;
        else return false;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n) return false;
            if (s[i + j] < lo || s[i + j] > hi) return false;
            lo = 0x80;
            hi = 0xbf;
        }
        i += k + 1;
    }
    return true;
}

/* ------------------------------------------------------------ basic calls */

START_TEST(test_loaded) {
    const char *names[] = {"bpe_plain", "bpe_prefix"};
    for (int i = 0; i < 2; i++) {
        json_t *e = tok_entry(names[i]);
        json_t *tj = tok_json(names[i]);
        skl_model *m = load_tok_model(names[i]);
        ck_assert(skl_model_has_tokenizer(m));
        ck_assert_int_eq(skl_tokenizer_size(m), json_integer_value(json_object_get(e, "size")));
        ck_assert_int_eq(skl_token_eos(m), added_id(tj, "<|endoftext|>"));
        skl_model_free(m);
        json_decref(tj);
        json_decref(e);
    }
    /* a model without tokenizer.json */
    json_t *man = test_manifest();
    skl_model *m = test_load(test_entry(man, "models", 0));
    ck_assert(!skl_model_has_tokenizer(m));
    ck_assert_int_eq(skl_tokenizer_size(m), 0);
    ck_assert_int_eq(skl_token_eos(m), -1);
    size_t n = 7;
    int32_t t[4];
    ck_assert_int_eq(skl_tokenize(m, "a", 1, t, 4, &n, 0), SKL_ERR_NO_TOKENIZER);
    ck_assert_int_eq(skl_detokenize(m, t, 0, NULL, 0, &n), SKL_ERR_NO_TOKENIZER);
    skl_detokenizer *d = (skl_detokenizer *)1;
    ck_assert_int_eq(skl_detokenizer_create(m, &d), SKL_ERR_NO_TOKENIZER);
    ck_assert_ptr_null(d);
    skl_model_free(m);
    json_decref(man);
    /* NULL arguments */
    ck_assert(!skl_model_has_tokenizer(NULL));
    ck_assert_int_eq(skl_tokenizer_size(NULL), 0);
    ck_assert_int_eq(skl_token_eos(NULL), -1);
    ck_assert_int_eq(skl_tokenize(NULL, "a", 1, t, 4, &n, 0), SKL_ERR_INVALID_ARG);
    skl_detokenizer_free(NULL);
}
END_TEST

START_TEST(test_buffer_protocol) {
    skl_model *m = load_tok_model("bpe_plain");
    const char *text = "Don't stop: the quick brown fox, 2024.";
    size_t n = 0, len = 0;
    ck_assert_int_eq(skl_tokenize(m, text, strlen(text), NULL, 0, &n, 0), SKL_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_gt(n, 2);
    size_t need = n;
    int32_t *t = calloc(need, sizeof *t);
    ck_assert_int_eq(skl_tokenize(m, text, strlen(text), t, need - 1, &n, 0), SKL_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, need);
    ck_assert_int_eq(skl_tokenize(m, text, strlen(text), t, need, &n, 0), SKL_OK);
    ck_assert_uint_eq(n, need);
    /* detokenize: cap = len needs one more byte for the NUL */
    ck_assert_int_eq(skl_detokenize(m, t, need, NULL, 0, &len), SKL_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len, strlen(text));
    char *s = malloc(len + 1);
    size_t len2 = 0;
    ck_assert_int_eq(skl_detokenize(m, t, need, s, len, &len2), SKL_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len2, len);
    ck_assert_int_eq(skl_detokenize(m, t, need, s, len + 1, &len2), SKL_OK);
    ck_assert_str_eq(s, text);
    /* empty text, empty ids */
    ck_assert_int_eq(skl_tokenize(m, "", 0, NULL, 0, &n, 0), SKL_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(skl_detokenize(m, NULL, 0, s, 1, &len2), SKL_OK);
    ck_assert_uint_eq(len2, 0);
    ck_assert_str_eq(s, "");
    /* bad arguments */
    ck_assert_int_eq(skl_tokenize(m, NULL, 3, t, need, &n, 0), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_tokenize(m, text, 3, NULL, 5, &n, 0), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_tokenize(m, text, 3, t, need, NULL, 0), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_tokenize(m, text, 3, t, need, &n, 2u), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_detokenize(m, t, need, s, 4, NULL), SKL_ERR_INVALID_ARG);
    free(s);
    free(t);
    skl_model_free(m);
}
END_TEST

START_TEST(test_round_trip_and_nul) {
    skl_model *m = load_tok_model("bpe_plain");
    /* text with NUL bytes, control characters and all of Latin-1 */
    char text[600];
    size_t k = 0;
    const char head[] = "a\0b\x01\x7f\n\t";
    memcpy(text, head, sizeof head - 1);
    k = sizeof head - 1;
    for (unsigned c = 0x80; c < 0x100; c++) { /* U+0080..U+00FF as UTF-8 */
        text[k++] = (char)(0xc0 | (c >> 6));
        text[k++] = (char)(0x80 | (c & 0x3f));
    }
    size_t n, len;
    int32_t *t = tokenize(m, text, k, 0, &n);
    char *s = detokenize(m, t, n, &len);
    ck_assert_uint_eq(len, k);
    ck_assert(memcmp(s, text, k) == 0);
    free(s);
    free(t);
    skl_model_free(m);
}
END_TEST

START_TEST(test_added_tokens) {
    skl_model *m = load_tok_model("bpe_plain");
    json_t *tj = tok_json("bpe_plain");
    int32_t eot = added_id(tj, "<|endoftext|>"), sep = added_id(tj, "<sep>");
    const char *text = "x<|endoftext|>y <sep>";
    size_t n, np;
    int32_t *t = tokenize(m, text, strlen(text), 0, &n);
    /* x | eot | y | ' ' | sep : single bytes x, y, ' ' have no merges into each other here */
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(t[0], byte_token(tj, 'x'));
    ck_assert_int_eq(t[1], eot);
    ck_assert_int_eq(t[2], byte_token(tj, 'y'));
    ck_assert_int_eq(t[3], byte_token(tj, ' '));
    ck_assert_int_eq(t[4], sep);
    /* PLAIN: no added token ids appear */
    int32_t *p = tokenize(m, text, strlen(text), SKL_TOKENIZE_PLAIN, &np);
    ck_assert_uint_gt(np, n);
    for (size_t i = 0; i < np; i++) ck_assert(p[i] != eot && p[i] != sep);
    size_t len;
    char *s = detokenize(m, p, np, &len);
    ck_assert_str_eq(s, text);
    free(s);
    s = detokenize(m, t, n, &len);
    ck_assert_str_eq(s, text); /* special tokens decode to their text */
    free(s);
    free(p);
    free(t);
    json_decref(tj);
    skl_model_free(m);
}
END_TEST

START_TEST(test_invalid_utf8) {
    skl_model *m = load_tok_model("bpe_plain");
    struct { const char *s; size_t len; size_t off; } bad[] = {
        {"ab\x80", 3, 2},             /* lone continuation byte */
        {"\xc0\xaf", 2, 0},           /* overlong */
        {"ok \xe2\x82", 5, 3},        /* truncated 3-byte sequence */
        {"\xed\xa0\x80", 3, 0},       /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, 0},   /* above U+10FFFF */
        {"abc\xff", 4, 3},
        {"\xf0\x9f\x8e", 3, 0},       /* emoji cut short */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = 99;
        int32_t t[16];
        ck_assert_int_eq(skl_tokenize(m, bad[i].s, bad[i].len, t, 16, &n, 0), SKL_ERR_INVALID_ARG);
        char want[64];
        snprintf(want, sizeof want, "byte offset %zu", bad[i].off);
        ck_assert_msg(strstr(skl_last_error(), want), "case %zu: '%s' does not name %s", i, skl_last_error(), want);
    }
    skl_model_free(m);
}
END_TEST

START_TEST(test_bad_ids) {
    skl_model *m = load_tok_model("bpe_prefix");
    int32_t size = skl_tokenizer_size(m);
    int32_t bad[] = {-1, size, size + 100, INT32_MIN};
    for (size_t i = 0; i < 4; i++) {
        int32_t t[3] = {5, bad[i], 6};
        char s[64];
        size_t len = 77;
        ck_assert_int_eq(skl_detokenize(m, t, 3, s, sizeof s, &len), SKL_ERR_TOKEN);
        ck_assert_ptr_nonnull(strstr(skl_last_error(), "outside"));
    }
    skl_model_free(m);
}
END_TEST

/* ------------------------------------------------------------- streaming */

START_TEST(test_stream_emoji) {
    skl_model *m = load_tok_model("bpe_plain");
    json_t *tj = tok_json("bpe_plain");
    skl_detokenizer *d;
    ck_assert_int_eq(skl_detokenizer_create(m, &d), SKL_OK);
    const unsigned char emoji[] = {0xf0, 0x9f, 0x8e, 0x89}; /* U+1F389 */
    const char *piece;
    size_t len;
    ck_assert_int_eq(skl_detokenizer_push(d, byte_token(tj, 'A'), &piece, &len), SKL_OK);
    ck_assert_str_eq(piece, "A");
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(skl_detokenizer_push(d, byte_token(tj, emoji[i]), &piece, &len), SKL_OK);
        ck_assert_str_eq(piece, "");
        ck_assert_uint_eq(len, 0);
        /* a bad id in the middle leaves the pending bytes alone */
        ck_assert_int_eq(skl_detokenizer_push(d, -5, &piece, &len), SKL_ERR_TOKEN);
    }
    ck_assert_int_eq(skl_detokenizer_push(d, byte_token(tj, emoji[3]), &piece, &len), SKL_OK);
    ck_assert_str_eq(piece, "\xf0\x9f\x8e\x89");
    ck_assert_uint_eq(len, 4);
    /* a character that can no longer complete: U+FFFD, then the next text */
    ck_assert_int_eq(skl_detokenizer_push(d, byte_token(tj, 0xe2), &piece, &len), SKL_OK);
    ck_assert_str_eq(piece, "");
    ck_assert_int_eq(skl_detokenizer_push(d, byte_token(tj, 'z'), &piece, &len), SKL_OK);
    ck_assert_str_eq(piece, "\xef\xbf\xbdz");
    /* pending at flush: one U+FFFD; flush resets */
    ck_assert_int_eq(skl_detokenizer_push(d, byte_token(tj, 0xf0), &piece, &len), SKL_OK);
    ck_assert_int_eq(skl_detokenizer_push(d, byte_token(tj, 0x9f), &piece, &len), SKL_OK);
    ck_assert_str_eq(piece, "");
    ck_assert_int_eq(skl_detokenizer_flush(d, &piece, &len), SKL_OK);
    ck_assert_str_eq(piece, "\xef\xbf\xbd");
    ck_assert_int_eq(skl_detokenizer_flush(d, &piece, &len), SKL_OK);
    ck_assert_str_eq(piece, "");
    ck_assert_int_eq(skl_detokenizer_push(NULL, 1, &piece, &len), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_detokenizer_push(d, 1, NULL, &len), SKL_ERR_INVALID_ARG);
    skl_detokenizer_free(d);
    json_decref(tj);
    skl_model_free(m);
}
END_TEST

/* Random id sequences: every piece is valid UTF-8 and the pieces concatenate
 * to skl_detokenize of the sequence. */
START_TEST(test_stream_random) {
    skl_model *m = load_tok_model("bpe_prefix");
    int32_t size = skl_tokenizer_size(m);
    skl_detokenizer *d;
    ck_assert_int_eq(skl_detokenizer_create(m, &d), SKL_OK);
    uint64_t x = 12345;
    for (int seq = 0; seq < 300; seq++) {
        int32_t ids[24];
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int n = 1 + (int)((x >> 33) % 24);
        for (int i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((x >> 33) % (uint64_t)size);
        }
        char cat[4096];
        size_t k = 0, len;
        const char *piece;
        for (int i = 0; i < n; i++) {
            ck_assert_int_eq(skl_detokenizer_push(d, ids[i], &piece, &len), SKL_OK);
            ck_assert_int_eq(piece[len], '\0'); /* may hold NUL bytes: the text of byte 0 */
            ck_assert(valid_utf8((const unsigned char *)piece, len));
            memcpy(cat + k, piece, len);
            k += len;
        }
        ck_assert_int_eq(skl_detokenizer_flush(d, &piece, &len), SKL_OK);
        ck_assert(valid_utf8((const unsigned char *)piece, len));
        memcpy(cat + k, piece, len);
        k += len;
        char *whole = detokenize(m, ids, (size_t)n, &len);
        ck_assert_uint_eq(len, k);
        ck_assert(memcmp(whole, cat, k) == 0);
        ck_assert(valid_utf8((const unsigned char *)whole, len));
        free(whole);
    }
    skl_detokenizer_free(d);
    skl_model_free(m);
}
END_TEST

/* ------------------------------------------------------------- generate */

typedef struct collect {
    char text[65536];
    size_t len;
    int32_t ids[512];
    int n_ids, n_final, n_null;
} collect;

static int on_piece(int32_t token, const char *piece, void *ud) {
    collect *c = ud;
    if (!piece) {
        c->n_null++;
        return 0;
    }
    if (token < 0) c->n_final++;
    else c->ids[c->n_ids++] = token;
    size_t n = strlen(piece);
    memcpy(c->text + c->len, piece, n);
    c->len += n;
    return 0;
}

START_TEST(test_generate_pieces) {
    const char *names[] = {"bpe_plain", "bpe_prefix"};
    for (int k = 0; k < 2; k++) {
        skl_model *m = load_tok_model(names[k]);
        skl_context *ctx;
        ck_assert_int_eq(skl_context_create(m, NULL, &ctx), SKL_OK);
        size_t n;
        int32_t *prompt = tokenize(m, "Skipless transformers", 21, 0, &n);
        skl_generate_params gp;
        skl_sampler_params gp_sp;
        test_generate_params(&gp, &gp_sp, 64, 1.5f); /* varied ids, including multi-byte pieces */
        gp_sp.seed = 7 + (uint64_t)k;
        collect *c = calloc(1, sizeof *c);
        skl_generate_result res;
        ck_assert_int_eq(skl_generate(ctx, prompt, (int32_t)n, &gp, on_piece, c, &res, sizeof res), SKL_OK);
        ck_assert(res.stop_reason == SKL_STOP_MAX_TOKENS || res.stop_reason == SKL_STOP_CONTEXT_FULL);
        ck_assert_int_ge(res.n_generated, 20);
        ck_assert_int_eq(c->n_ids, res.n_generated);
        ck_assert_int_eq(c->n_null, 0);
        ck_assert_int_le(c->n_final, 1);
        size_t len;
        char *whole = detokenize(m, c->ids, (size_t)c->n_ids, &len);
        /* pieces are C strings: a U+0000 (byte 0's token) ends its piece */
        size_t k2 = 0;
        for (size_t i = 0; i < len; i++)
            if (whole[i]) whole[k2++] = whole[i];
        len = k2;
        ck_assert_uint_eq(len, c->len);
        ck_assert(memcmp(whole, c->text, len) == 0);
        free(whole);
        free(c);
        free(prompt);
        skl_context_free(ctx);
        skl_model_free(m);
    }
}
END_TEST

/* -------------------------------------------------- save, reload, merge */

static void same_tokenizer(const skl_model *a, const skl_model *b) {
    const char *text = "Café <sep> the thing<|endoftext|> 42 🎉";
    ck_assert(skl_model_has_tokenizer(b));
    ck_assert_int_eq(skl_tokenizer_size(a), skl_tokenizer_size(b));
    ck_assert_int_eq(skl_token_eos(a), skl_token_eos(b));
    size_t na, nb;
    int32_t *ta = tokenize(a, text, strlen(text), 0, &na), *tb = tokenize(b, text, strlen(text), 0, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(memcmp(ta, tb, na * sizeof *ta) == 0);
    free(ta);
    free(tb);
}

START_TEST(test_save_merge) {
    const char *names[] = {"bpe_plain", "bpe_prefix"};
    for (int k = 0; k < 2; k++) {
        skl_model *m = load_tok_model(names[k]);
        char dir[] = "/tmp/skl_tok_XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        char pd[128], pf[128];
        snprintf(pd, sizeof pd, "%s/m", dir);
        snprintf(pf, sizeof pf, "%s/m.safetensors", dir);
        ck_assert_int_eq(skl_model_save(m, pd, SKL_SAVE_DIR), SKL_OK);
        ck_assert_int_eq(skl_model_save(m, pf, SKL_SAVE_FILE), SKL_OK);
        skl_model *r;
        ck_assert_int_eq(skl_model_load(pd, NULL, &r), SKL_OK);
        same_tokenizer(m, r);
        skl_model_free(r);
        ck_assert_int_eq(skl_model_load(pf, NULL, &r), SKL_OK);
        same_tokenizer(m, r);
        skl_model_free(r);
        skl_merge_params mp;
        skl_merge_params_init(&mp, sizeof mp);
        mp.verify = false;
        skl_model *merged;
        ck_assert_int_eq(skl_model_merge(m, &mp, &merged, NULL), SKL_OK);
        skl_model_free(m); /* the merged model keeps the shared tokenizer alive */
        skl_model *fresh = load_tok_model(names[k]);
        same_tokenizer(fresh, merged);
        skl_model_free(fresh);
        skl_model_free(merged);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

/* ------------------------------------------ malformed and unsupported files */

/* A directory model = tok_plain's weights and config (or config_text) + the
 * given tokenizer.json. */
typedef struct variant_dir {
    char dir[64];
} variant_dir;

static void write_text(const char *dir, const char *name, const char *text) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *fp = fopen(p, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    ck_assert_int_eq(fclose(fp), 0);
}

static void make_variant_config(variant_dir *v, const char *tokenizer_text, const char *config_text) {
    strcpy(v->dir, "/tmp/skl_tokv_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(v->dir));
    char *model = tok_model_path("bpe_plain");
    char src[4200], dst[128];
    char *abs = realpath(model, NULL);
    ck_assert_ptr_nonnull(abs);
    const char *files[] = {"model.safetensors", "config.json"};
    for (int i = 0; i < (config_text ? 1 : 2); i++) {
        snprintf(src, sizeof src, "%s/%s", abs, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", v->dir, files[i]);
        ck_assert_int_eq(symlink(src, dst), 0);
    }
    free(abs);
    free(model);
    if (config_text) write_text(v->dir, "config.json", config_text);
    write_text(v->dir, "tokenizer.json", tokenizer_text);
}

static void make_variant(variant_dir *v, const char *tokenizer_text) { make_variant_config(v, tokenizer_text, NULL); }

static void drop_variant(variant_dir *v) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", v->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Edit a copy of bpe_plain's JSON with `edit`, return the text. */
typedef void (*edit_fn)(json_t *root);
static char *edited(edit_fn edit) {
    json_t *j = tok_json("bpe_plain");
    if (edit) edit(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static json_t *model_of(json_t *r) { return json_object_get(r, "model"); }
static json_t *vocab_of(json_t *r) { return json_object_get(model_of(r), "vocab"); }
static json_t *added_of(json_t *r, size_t i) { return json_array_get(json_object_get(r, "added_tokens"), i); }

static void e_root_array(json_t *r) { json_object_clear(r); json_object_set_new(r, "model", json_array()); }
static void e_no_model(json_t *r) { json_object_del(r, "model"); }
static void e_model_no_type(json_t *r) { json_object_del(model_of(r), "type"); }
static void e_vocab_list(json_t *r) { json_object_set_new(model_of(r), "vocab", json_array()); }
static void e_merges_object(json_t *r) { json_object_set_new(model_of(r), "merges", json_object()); }
static void e_vocab_negative(json_t *r) { json_object_set_new(vocab_of(r), "Ġthe", json_integer(-3)); }
static void e_vocab_string_id(json_t *r) { json_object_set_new(vocab_of(r), "a", json_string("97")); }
static void e_vocab_dup_id(json_t *r) { json_object_set_new(vocab_of(r), "zzzz", json_integer(5)); }
static void e_vocab_gap(json_t *r) { json_object_set_new(added_of(r, 1), "id", json_integer(600)); }
static void e_merge_unknown(json_t *r) {
    json_array_append_new(json_object_get(model_of(r), "merges"), json_string("qqq zzz"));
}
static void e_merge_no_space(json_t *r) { json_array_set_new(json_object_get(model_of(r), "merges"), 0, json_string("ab")); }
static void e_merge_two_spaces(json_t *r) { json_array_set_new(json_object_get(model_of(r), "merges"), 0, json_string("a b c")); }
static void e_merge_triple(json_t *r) {
    json_array_set_new(json_object_get(model_of(r), "merges"), 0, json_pack("[sss]", "a", "b", "c"));
}
static void e_merge_number(json_t *r) { json_array_set_new(json_object_get(model_of(r), "merges"), 0, json_integer(1)); }
static void e_added_no_content(json_t *r) { json_object_del(added_of(r, 0), "content"); }
static void e_added_empty(json_t *r) { json_object_set_new(added_of(r, 0), "content", json_string("")); }
static void e_added_bad_id(json_t *r) { json_object_set_new(added_of(r, 0), "id", json_string("x")); }
static void e_added_dup_content(json_t *r) { json_object_set_new(added_of(r, 1), "content", json_string("<|endoftext|>")); }
static void e_added_vocab_clash(json_t *r) { json_object_set_new(added_of(r, 1), "content", json_string("a")); }
static void e_added_id_clash(json_t *r) { json_object_set_new(added_of(r, 1), "id", json_integer(7)); }
static void e_added_flag_type(json_t *r) { json_object_set_new(added_of(r, 0), "special", json_string("yes")); }
static void e_added_list(json_t *r) { json_object_set_new(r, "added_tokens", json_object()); }
static void e_pre_no_type(json_t *r) { json_object_set_new(r, "pre_tokenizer", json_object()); }
static void e_pre_string(json_t *r) { json_object_set_new(r, "pre_tokenizer", json_string("ByteLevel")); }
static void e_seq_no_list(json_t *r) {
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Sequence"));
}
static void e_prefix_type(json_t *r) {
    json_object_set_new(json_object_get(r, "pre_tokenizer"), "add_prefix_space", json_integer(1));
}
static void e_ignore_merges_type(json_t *r) { json_object_set_new(model_of(r), "ignore_merges", json_string("no")); }

START_TEST(test_malformed) {
    struct { const char *name; edit_fn edit; const char *raw; int code; } cases[] = {
        {"invalid JSON", NULL, "{\"model\": ", SKL_ERR_JSON},
        {"duplicate key", NULL, "{\"model\": {}, \"model\": {}}", SKL_ERR_DUPLICATE_KEY},
        {"top-level list", NULL, "[1, 2]", SKL_ERR_TOKENIZER},
        {"model is a list", e_root_array, NULL, SKL_ERR_TOKENIZER},
        {"no model", e_no_model, NULL, SKL_ERR_TOKENIZER},
        {"model without type", e_model_no_type, NULL, SKL_ERR_TOKENIZER},
        {"vocab is a list", e_vocab_list, NULL, SKL_ERR_TOKENIZER},
        {"merges is an object", e_merges_object, NULL, SKL_ERR_TOKENIZER},
        {"negative vocab id", e_vocab_negative, NULL, SKL_ERR_TOKENIZER},
        {"string vocab id", e_vocab_string_id, NULL, SKL_ERR_TOKENIZER},
        {"duplicate vocab id", e_vocab_dup_id, NULL, SKL_ERR_TOKENIZER},
        {"ids not dense", e_vocab_gap, NULL, SKL_ERR_TOKENIZER},
        {"merge of unknown tokens", e_merge_unknown, NULL, SKL_ERR_TOKENIZER},
        {"merge without space", e_merge_no_space, NULL, SKL_ERR_TOKENIZER},
        {"merge with two spaces", e_merge_two_spaces, NULL, SKL_ERR_TOKENIZER},
        {"merge of three", e_merge_triple, NULL, SKL_ERR_TOKENIZER},
        {"merge is a number", e_merge_number, NULL, SKL_ERR_TOKENIZER},
        {"added token without content", e_added_no_content, NULL, SKL_ERR_TOKENIZER},
        {"added token empty", e_added_empty, NULL, SKL_ERR_TOKENIZER},
        {"added token id not an integer", e_added_bad_id, NULL, SKL_ERR_TOKENIZER},
        {"added token twice", e_added_dup_content, NULL, SKL_ERR_TOKENIZER},
        {"added token with another vocab id", e_added_vocab_clash, NULL, SKL_ERR_TOKENIZER},
        {"added token id of another token", e_added_id_clash, NULL, SKL_ERR_TOKENIZER},
        {"added token flag not boolean", e_added_flag_type, NULL, SKL_ERR_TOKENIZER},
        {"added_tokens not a list", e_added_list, NULL, SKL_ERR_TOKENIZER},
        {"pre_tokenizer without type", e_pre_no_type, NULL, SKL_ERR_TOKENIZER},
        {"pre_tokenizer a string", e_pre_string, NULL, SKL_ERR_TOKENIZER},
        {"Sequence without list", e_seq_no_list, NULL, SKL_ERR_TOKENIZER},
        {"add_prefix_space not boolean", e_prefix_type, NULL, SKL_ERR_TOKENIZER},
        {"ignore_merges not boolean", e_ignore_merges_type, NULL, SKL_ERR_TOKENIZER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = cases[i].edit ? edited(cases[i].edit) : strdup(cases[i].raw);
        variant_dir v;
        make_variant(&v, text);
        skl_model *m = (skl_model *)1;
        int rc = skl_model_load(v.dir, NULL, &m);
        ck_assert_msg(rc == cases[i].code, "%s: got %d (%s), expected %d", cases[i].name, rc, skl_last_error(),
                      cases[i].code);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(skl_last_error(), "tokenizer.json"), "%s: message '%s' does not name the file",
                      cases[i].name, skl_last_error());
        drop_variant(&v);
        free(text);
    }
}
END_TEST

static void u_metaspace(json_t *r) {
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s,s:s}", "type", "Metaspace", "replacement", "▁"));
}
static void u_unigram(json_t *r) {
    json_object_set_new(r, "model", json_pack("{s:s,s:[]}", "type", "Unigram", "vocab"));
}
static void u_wordpiece(json_t *r) { json_object_set_new(model_of(r), "type", json_string("WordPiece")); }
static void u_normalizer(json_t *r) { json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFC")); }
static void u_decoder(json_t *r) { json_object_set_new(r, "decoder", json_null()); }
static void u_decoder_wp(json_t *r) { json_object_set_new(r, "decoder", json_pack("{s:s}", "type", "WordPiece")); }
static void u_lstrip(json_t *r) { json_object_set_new(added_of(r, 1), "lstrip", json_true()); }
static void u_single_word(json_t *r) { json_object_set_new(added_of(r, 1), "single_word", json_true()); }
static void u_byte_fallback(json_t *r) { json_object_set_new(model_of(r), "byte_fallback", json_true()); }
static void u_dropout(json_t *r) { json_object_set_new(model_of(r), "dropout", json_real(0.1)); }
static void u_unk(json_t *r) { json_object_set_new(model_of(r), "unk_token", json_string("a")); }
static void u_prefix(json_t *r) { json_object_set_new(model_of(r), "continuing_subword_prefix", json_string("##")); }
static void u_no_regex(json_t *r) { json_object_set_new(json_object_get(r, "pre_tokenizer"), "use_regex", json_false()); }
static void u_seq_two(json_t *r) {
    json_t *bl = json_deep_copy(json_object_get(r, "pre_tokenizer"));
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s,s:[o,{s:s}]}", "type", "Sequence", "pretokenizers", bl,
                                                      "type", "Digits"));
}
static void u_template(json_t *r) {
    json_object_set_new(r, "post_processor", json_pack("{s:s}", "type", "TemplateProcessing"));
}
static void u_padding(json_t *r) { json_object_set_new(r, "padding", json_pack("{s:i}", "pad_id", 0)); }

START_TEST(test_unsupported) {
    struct { const char *name; edit_fn edit; const char *msg; } cases[] = {
        {"Metaspace", u_metaspace, "tokenizer.json: unsupported pre-tokenizer Metaspace"},
        {"Unigram", u_unigram, "unsupported model type Unigram"},
        {"WordPiece", u_wordpiece, "unsupported model type WordPiece"},
        {"normalizer", u_normalizer, "unsupported normalizer NFC"},
        {"no decoder", u_decoder, "unsupported decoder null"},
        {"WordPiece decoder", u_decoder_wp, "unsupported decoder WordPiece"},
        {"lstrip", u_lstrip, "unsupported added-token option lstrip"},
        {"single_word", u_single_word, "unsupported added-token option single_word"},
        {"byte_fallback", u_byte_fallback, "unsupported BPE byte_fallback"},
        {"dropout", u_dropout, "unsupported BPE dropout"},
        {"unk_token", u_unk, "unsupported BPE unk_token"},
        {"continuing_subword_prefix", u_prefix, "unsupported BPE continuing_subword_prefix"},
        {"use_regex false", u_no_regex, "use_regex false"},
        {"Sequence of two", u_seq_two, "unsupported pre-tokenizer Sequence"},
        {"TemplateProcessing", u_template, "unsupported post-processor TemplateProcessing"},
        {"padding", u_padding, "unsupported padding"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = edited(cases[i].edit);
        variant_dir v;
        make_variant(&v, text);
        skl_model *m = NULL;
        int rc = skl_model_load(v.dir, NULL, &m);
        ck_assert_msg(rc == SKL_OK, "%s: load failed: %s", cases[i].name, skl_last_error());
        ck_assert(!skl_model_has_tokenizer(m));
        ck_assert_int_eq(skl_tokenizer_size(m), 0);
        size_t n;
        int32_t t[8] = {1, 2, 3};
        ck_assert_int_eq(skl_tokenize(m, "hi", 2, t, 8, &n, 0), SKL_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(skl_last_error(), cases[i].msg), "%s: message '%s' lacks '%s'", cases[i].name,
                      skl_last_error(), cases[i].msg);
        char s[16];
        ck_assert_int_eq(skl_detokenize(m, t, 3, s, sizeof s, &n), SKL_ERR_UNSUPPORTED);
        skl_detokenizer *d;
        ck_assert_int_eq(skl_detokenizer_create(m, &d), SKL_ERR_UNSUPPORTED);
        /* the model itself works: evaluate and generate ids (pieces NULL) */
        skl_context *ctx;
        ck_assert_int_eq(skl_context_create(m, NULL, &ctx), SKL_OK);
        ck_assert_int_eq(skl_eval(ctx, t, 3), SKL_OK);
        collect *c = calloc(1, sizeof *c);
        skl_generate_params gp;
        skl_sampler_params gp_sp;
        test_generate_params(&gp, &gp_sp, 3, TEST_SAMPLER_DEFAULT);
        ck_assert_int_eq(skl_generate(ctx, t, 1, &gp, on_piece, c, NULL, 0), SKL_OK);
        ck_assert_int_eq(c->n_null, 3);
        free(c);
        skl_context_free(ctx);
        skl_model_free(m);
        drop_variant(&v);
        free(text);
    }
}
END_TEST

/* Single file: __metadata__ "tokenizer.json" that is not a string. */
START_TEST(test_metadata_not_string) {
    char *path = tok_model_path("bpe_prefix");
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    unsigned char len8[8];
    ck_assert_uint_eq(fread(len8, 1, 8, fp), 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | len8[i];
    char *hdr = malloc(hl + 1);
    ck_assert_uint_eq(fread(hdr, 1, hl, fp), hl);
    hdr[hl] = '\0';
    fseek(fp, 0, SEEK_END);
    long end = ftell(fp);
    size_t data_len = (size_t)end - 8 - hl;
    char *data = malloc(data_len + 1);
    fseek(fp, (long)(8 + hl), SEEK_SET);
    ck_assert_uint_eq(fread(data, 1, data_len, fp), data_len);
    fclose(fp);
    json_t *h = json_loads(hdr, 0, NULL);
    ck_assert_ptr_nonnull(h);
    json_object_set_new(json_object_get(h, "__metadata__"), "tokenizer.json", json_integer(3));
    char *nh = json_dumps(h, JSON_COMPACT);
    size_t nl = strlen(nh), padded = (nl + 7) / 8 * 8;
    char out[] = "/tmp/skl_tokmeta_XXXXXX";
    int fd = mkstemp(out);
    ck_assert_int_ge(fd, 0);
    fp = fdopen(fd, "wb");
    for (int i = 0; i < 8; i++) fputc((int)((padded >> (8 * i)) & 0xff), fp);
    fwrite(nh, 1, nl, fp);
    for (size_t i = nl; i < padded; i++) fputc(' ', fp);
    fwrite(data, 1, data_len, fp);
    fclose(fp);
    skl_model *m;
    /* SKL_ERR_TOKENIZER until 1.1; since 1.2 every non-string __metadata__ value is SKL_ERR_METADATA */
    ck_assert_int_eq(skl_model_load(out, NULL, &m), SKL_ERR_METADATA);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "tokenizer.json"));
    unlink(out);
    free(nh);
    json_decref(h);
    free(data);
    free(hdr);
    free(path);
}
END_TEST

/* config "eos_token_id" wins over <|endoftext|>; a list gives its first entry;
 * a malformed one fails the load. */
START_TEST(test_eos_config) {
    char *model = tok_model_path("bpe_plain");
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s/config.json", model);
    free(model);
    json_error_t err;
    json_t *cfg = json_load_file(cpath, 0, &err);
    ck_assert_ptr_nonnull(cfg);
    char *tok = edited(NULL);
    struct { json_t *value; int rc; int32_t eos; } cases[] = {
        {json_integer(5), SKL_OK, 5},
        {json_pack("[ii]", 7, 8), SKL_OK, 7},
        {json_null(), SKL_OK, -2 /* <|endoftext|> */},
        {json_string("5"), SKL_ERR_CONFIG, 0},
        {json_integer(-1), SKL_ERR_CONFIG, 0},
        {json_array(), SKL_ERR_CONFIG, 0},
    };
    json_t *tj = tok_json("bpe_plain");
    int32_t eot = added_id(tj, "<|endoftext|>");
    json_decref(tj);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object_set_new(cfg, "eos_token_id", cases[i].value);
        char *ctext = json_dumps(cfg, 0);
        variant_dir v;
        make_variant_config(&v, tok, ctext);
        skl_model *m = NULL;
        int rc = skl_model_load(v.dir, NULL, &m);
        ck_assert_msg(rc == cases[i].rc, "case %zu: %d (%s)", i, rc, skl_last_error());
        if (rc == SKL_OK) ck_assert_int_eq(skl_token_eos(m), cases[i].eos == -2 ? eot : cases[i].eos);
        else ck_assert_ptr_nonnull(strstr(skl_last_error(), "eos_token_id"));
        skl_model_free(m);
        drop_variant(&v);
        free(ctext);
    }
    free(tok);
    json_decref(cfg);
}
END_TEST

/* A tokenizer smaller than vocab_size: a sampled id without text ends
 * generation with SKL_ERR_TOKEN and SKL_STOP_ERROR. */
START_TEST(test_generate_unknown_id) {
    json_t *tj = tok_json("bpe_prefix");
    char *tok = json_dumps(tj, 0);
    json_decref(tj);
    variant_dir v;
    make_variant(&v, tok); /* tok_plain's 548-token model, bpe_prefix's 459 tokens */
    skl_model *m;
    ck_assert_int_eq(skl_model_load(v.dir, NULL, &m), SKL_OK);
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    ck_assert_int_lt(skl_tokenizer_size(m), hp.vocab_size);
    skl_context *ctx;
    ck_assert_int_eq(skl_context_create(m, NULL, &ctx), SKL_OK);
    skl_generate_params gp;
    skl_sampler_params gp_sp;
    test_generate_params(&gp, &gp_sp, 60, 2.0f);
    collect *c = calloc(1, sizeof *c);
    int32_t prompt[1] = {1};
    skl_generate_result res;
    int rc = skl_generate(ctx, prompt, 1, &gp, on_piece, c, &res, sizeof res);
    ck_assert_msg(rc == SKL_ERR_TOKEN, "rc %d: no id >= %d sampled in 60 tokens?", rc, skl_tokenizer_size(m));
    ck_assert_int_eq(res.stop_reason, SKL_STOP_ERROR);
    ck_assert_int_eq(res.n_generated, c->n_ids);
    ck_assert_int_eq(c->n_final, 0);
    for (int i = 0; i < c->n_ids; i++) ck_assert_int_lt(c->ids[i], skl_tokenizer_size(m));
    free(c);
    skl_context_free(ctx);
    skl_model_free(m);
    drop_variant(&v);
    free(tok);
}
END_TEST

Suite *tokenizer_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"calls", test_loaded, 0, 0},
        {"calls", test_buffer_protocol, 0, 0},
        {"calls", test_round_trip_and_nul, 0, 0},
        {"calls", test_added_tokens, 0, 0},
        {"calls", test_invalid_utf8, 0, 0},
        {"calls", test_bad_ids, 0, 0},
        {"stream", test_stream_emoji, 0, 0},
        {"stream", test_stream_random, 0, 0},
        {"stream", test_generate_pieces, 0, 0},
        {"files", test_save_merge, 0, 0},
        {"files", test_malformed, 0, 0},
        {"files", test_unsupported, 0, 0},
        {"files", test_metadata_not_string, 0, 0},
        {"files", test_eos_config, 0, 0},
        {"files", test_generate_unknown_id, 0, 0},
    };
    return test_suite("tokenizer", tests, TEST_COUNT(tests));
}
