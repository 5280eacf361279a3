/*
 * skipless.h - public API of libskipless, an embeddable C inference library
 * for skipless transformers (no skip connections, no normalization inside the
 * stack).  See README.md and docs/api.md.
 *
 * Conventions
 *  - Every fallible call returns an skl_status: 0 (SKL_OK) or a negative code.
 *    The numeric values are pinned forever.  skl_strerror() gives a static
 *    string for a code, skl_status_name() its enumerator name;
 *    skl_last_error() gives the message of the last failure on the calling
 *    thread, naming the file, tensor, expected and actual value.
 *  - Objects come in create/free pairs; every skl_*_free(NULL) is a no-op.
 *  - Callbacks take a void *user_data; a nonzero return stops the work.
 *  - The library never prints, never exits or aborts on bad input, and reads
 *    no environment variable but OpenBLAS's OPENBLAS_CORETYPE, which its
 *    one-time BLAS core check may also set and unset (skl_blas_get_info();
 *    skl_blas_set_auto_core(false) turns the check off); the log callback is
 *    the only way it speaks.
 *
 * Versions and the ABI: the rule
 *  A program or binding built against the header of version X.Y keeps working,
 *  unchanged and without recompiling, with a library of version X.Z for any
 *  Z >= Y (the shared library's soname is libskipless.so.X).  Later minor
 *  versions only add functions, enum constants and struct fields appended at
 *  the end of a struct, and never change a signature.  This holds because the
 *  library never assumes its own sizeof of a struct in the caller's memory:
 *  - A struct the caller passes in (skl_*_params) begins with struct_size, set
 *    by skl_*_params_init(&p, sizeof p).  The library reads only the first
 *    struct_size bytes and takes its defaults for the fields after them.
 *  - A function that fills a struct in the caller's memory takes its size
 *    (sizeof *out) as an argument and writes only that many bytes.
 *  - What the library allocates (skl_merge_report, skl_plan) may grow at the
 *    end; their arrays are read through accessors (skl_merge_report_layer,
 *    skl_plan_row_at), never indexed by the caller, and strings are pointers.
 *  - No public struct holds a fixed-size array, and no struct is nested in
 *    another by value.
 *  Declarations added after 1.0 say "Since 1.x"; a caller that uses them
 *  needs that library version (check skl_version_number()).
 *  A caller newer than the library (struct_size or size larger than the
 *  library knows) gets the fields the library knows; the rest of an output
 *  struct is zeroed.  A size smaller than the struct of version 1.0 is
 *  SKL_ERR_INVALID_ARG.  test/abi/ proves the rule (docs/api.md, "ABI").
 *
 * Thread safety, object by object
 *  - skl_model: immutable after skl_model_load() returns.  Any number of
 *    threads may use one model concurrently (create contexts, read hparams).
 *    Free it only after every context created from it has been freed.
 *  - skl_context: the KV cache and scratch of one sequence.  One thread at a
 *    time; different contexts may run concurrently on different threads.
 *  - skl_generator: works on its context; one thread at a time, and no other
 *    call on that context while it exists.  Free it before the context.
 *  - skl_sampler: its RNG state changes on every sample; one thread at a time.
 *  - The tokenizer is part of the immutable model: skl_tokenize and
 *    skl_detokenize may run concurrently.  skl_detokenizer: one thread at a
 *    time; free it before its model.
 *  - skl_last_error(): thread-local, so concurrent failures do not mix.
 *  - skl_log_set(), skl_blas_set_auto_core(): global; call them once before
 *    other calls.  The log callback may be called from any thread that calls
 *    into the library.
 *  - n_threads of a context is its one thread knob: the context owns a pool
 *    of n_threads - 1 worker threads (started by skl_context_create, joined by
 *    skl_context_free) that run decode and the elementwise work, and each
 *    skl_eval sets OpenBLAS's thread count to n_threads for the batched
 *    (prefill) matrix products, during which the pool is idle.  OpenBLAS's
 *    count is process-wide: contexts evaluated concurrently should use equal
 *    counts.  Logits are bitwise identical for a given n_threads; decode
 *    (single-token) logits are identical for every n_threads.
 *  - skl_cpu_kernels(): thread-safe; the choice is made once.
 *  - The first skl_model_load() or skl_blas_get_info() of a process may
 *    re-initialise OpenBLAS (see "BLAS" below): no other thread may be in a
 *    BLAS call, or read or change the environment, meanwhile.
 */
#ifndef SKIPLESS_H
#define SKIPLESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SKL_API __declspec(dllexport)
#else
#define SKL_API __attribute__((visibility("default")))
#endif

/* The one place the version is written: the Makefile, the bindings' package
 * files and their tests read it from these lines. */
#define SKL_VERSION_MAJOR 1
#define SKL_VERSION_MINOR 2
#define SKL_VERSION_PATCH 0
#define SKL_VERSION_STRING "1.2.0"
#define SKL_VERSION_NUMBER (SKL_VERSION_MAJOR * 10000 + SKL_VERSION_MINOR * 100 + SKL_VERSION_PATCH)

/* ------------------------------------------------------------------ status */

/* The one list of status codes: X(name, value, description).  The enum below,
 * skl_strerror(), skl_status_name() and the bindings' error types are all
 * made from it. */
#define SKL_STATUS_LIST(X)                                                                          \
    X(SKL_OK, 0, "success")                                                                         \
    X(SKL_ERR_INVALID_ARG, -1, "invalid argument")             /* NULL pointer or parameter out of range */ \
    X(SKL_ERR_NOMEM, -2, "out of memory")                                                           \
    X(SKL_ERR_IO, -3, "input/output error")                    /* open/stat/read/mmap/write failed */ \
    X(SKL_ERR_TRUNCATED, -4, "file is truncated")              /* ends before the data it declares */ \
    X(SKL_ERR_HEADER_SIZE, -5, "safetensors header length out of bounds")                           \
    X(SKL_ERR_JSON, -6, "invalid JSON")                        /* header, config or tokenizer */     \
    X(SKL_ERR_DUPLICATE_KEY, -7, "duplicate JSON key")                                              \
    X(SKL_ERR_HEADER, -8, "malformed safetensors header")      /* valid JSON, wrong structure */     \
    X(SKL_ERR_DTYPE, -9, "unknown or unsupported dtype")                                            \
    X(SKL_ERR_TENSOR_SIZE, -10, "tensor byte size does not match its shape")                        \
    X(SKL_ERR_OUT_OF_RANGE, -11, "tensor data outside the data area")                               \
    X(SKL_ERR_OVERLAP, -12, "tensors overlap")                                                      \
    X(SKL_ERR_GAP, -13, "unused bytes between or after tensors")                                    \
    X(SKL_ERR_CONFIG, -14, "invalid model config")             /* key missing or value invalid */    \
    X(SKL_ERR_SHAPE, -15, "tensor shape inconsistent with config")                                  \
    X(SKL_ERR_MISSING_TENSOR, -16, "required tensor missing")                                       \
    X(SKL_ERR_UNEXPECTED_TENSOR, -17, "unexpected tensor")     /* one the model does not use */      \
    X(SKL_ERR_TOKEN, -18, "token id out of range")             /* outside [0, vocab_size) */         \
    X(SKL_ERR_CONTEXT_FULL, -19, "context is full")                                                 \
    X(SKL_ERR_CANCELLED, -20, "cancelled by callback")                                              \
    X(SKL_ERR_MERGE_NOT_APPLICABLE, -21, "merge does not apply to this model")                      \
    X(SKL_ERR_SINGULAR, -22, "matrix is singular")                                                  \
    X(SKL_ERR_ILL_CONDITIONED, -23, "matrix too ill-conditioned")                                   \
    X(SKL_ERR_ALREADY_MERGED, -24, "model already merged")                                          \
    X(SKL_ERR_UNSUPPORTED, -25, "unsupported")                 /* valid input this version cannot handle */ \
    X(SKL_ERR_TOKENIZER, -26, "malformed tokenizer.json")      /* names the key or entry */          \
    X(SKL_ERR_NO_TOKENIZER, -27, "model has no tokenizer")                                          \
    X(SKL_ERR_BUFFER_TOO_SMALL, -28, "buffer too small")       /* the needed size is returned */ \
    /* since 1.1: sharded checkpoints (model.safetensors.index.json) */                             \
    X(SKL_ERR_INDEX, -29, "malformed shard index")             /* model.safetensors.index.json: valid JSON, wrong structure */ \
    X(SKL_ERR_SHARD_NAME, -30, "shard name is not a plain file name") /* a weight_map value with '/', or "." / ".." */ \
    X(SKL_ERR_SHARD_MISSING, -31, "shard file missing or not a regular file")                       \
    X(SKL_ERR_SHARD_MISMATCH, -32, "tensor not in the shard the index names")                       \
    X(SKL_ERR_SHARD_DUPLICATE, -33, "tensor in two shards")                                         \
    X(SKL_ERR_SHARD_UNINDEXED, -34, "shard tensor not in the index") /* a shard holds a tensor weight_map does not list */ \
    /* since 1.2: quantized weights (config.json "quantization_config", compressed-tensors) */     \
    X(SKL_ERR_QUANT_CONFIG, -35, "malformed or unsupported quantization_config") /* names the key */ \
    X(SKL_ERR_QUANT_GROUP, -36, "unsupported quantization group") /* not groups of 32 inputs of a row */ \
    X(SKL_ERR_QUANT_WEIGHT, -37, "malformed quantized weight") /* packed weight or weight_shape: dtype, shape */ \
    X(SKL_ERR_QUANT_SCALE, -38, "malformed quantization scale") /* weight_scale missing, misplaced, of the wrong shape, dtype or value */ \
    /* since 1.2: hardening (docs/reliability.md) */                                                \
    X(SKL_ERR_METADATA, -39, "__metadata__ value is not a string") /* the format maps strings to strings */ \
    X(SKL_ERR_JSON_LIMIT, -40, "JSON has too many values") /* above the bound of docs/model-format.md ("Bounds"), refused before parsing */ \
    X(SKL_ERR_NOT_FINITE, -41, "tensor holds NaN or infinity") /* merge: refused before LAPACK, the tensor named */ \
    X(SKL_ERR_SAME_AS_SOURCE, -42, "output is the model's own source") /* save/merge onto the files it was loaded from */

typedef enum skl_status {
#define SKL_STATUS_ENUMERATOR_(name, value, text) name = value,
    SKL_STATUS_LIST(SKL_STATUS_ENUMERATOR_)
#undef SKL_STATUS_ENUMERATOR_
} skl_status;

/* Static description of a status code (never NULL; "unknown status" if unknown). */
SKL_API const char *skl_strerror(int status);
/* Enumerator name of a status code ("SKL_ERR_IO"); NULL if unknown. */
SKL_API const char *skl_status_name(int status);
/* Message of the last failed call on this thread ("" when none). */
SKL_API const char *skl_last_error(void);

/* ----------------------------------------------------------------- version */

SKL_API const char *skl_version(void);   /* SKL_VERSION_STRING of the library */
SKL_API int skl_version_number(void);    /* SKL_VERSION_NUMBER of the library */
/* The kernel variant this CPU runs, chosen once by CPU features:
 * "avx512" (AVX-512F + AVX2 + FMA + F16C), "avx2" (AVX2 + FMA + F16C) or "generic" (portable C). */
SKL_API const char *skl_cpu_kernels(void);

/* --------------------------------------------------------------------- log */

typedef enum skl_log_level {
    SKL_LOG_ERROR = 0,
    SKL_LOG_WARN = 1,
    SKL_LOG_INFO = 2,
    SKL_LOG_DEBUG = 3
} skl_log_level;

typedef void (*skl_log_fn)(skl_log_level level, const char *message, void *user_data);
/* Install a log callback (NULL: silence, the default). */
SKL_API void skl_log_set(skl_log_fn fn, void *user_data);

/* Progress of long work: done of total units; return nonzero to cancel. */
typedef int (*skl_progress_fn)(uint64_t done, uint64_t total, void *user_data);

/* ------------------------------------------------------------------- model */

typedef struct skl_model skl_model;

/* Weight storage types.  A loaded model keeps each tensor in its file dtype
 * (F16/BF16 are not widened); computation accumulates in fp32. */
typedef enum skl_dtype {
    SKL_DTYPE_F32 = 0,
    SKL_DTYPE_F16 = 1,   /* IEEE half */
    SKL_DTYPE_BF16 = 2,  /* bfloat16 */
    SKL_DTYPE_SAME = 3,  /* merge only: like the tensor it replaces */
    /* Since 1.2: linear-layer weights quantized in groups of 32 consecutive
     * inputs of a row, one F16 scale a group, symmetric (docs/quantization.md;
     * stored as compressed-tensors writes them, docs/model-format.md). */
    SKL_DTYPE_Q8_0 = 4,  /* int8 weights, w = q * scale (llama.cpp's Q8_0) */
    SKL_DTYPE_Q4_0 = 5   /* 4-bit weights, two a byte, w = q * scale, q in [-8, 7] (Q4_0) */
} skl_dtype;

/* Since 1.2: the name of a dtype ("F32", "F16", "BF16", "SAME", "Q8_0",
 * "Q4_0"); NULL if unknown. */
SKL_API const char *skl_dtype_name(skl_dtype dtype);
/* Since 1.2: the dtype named `name` (skl_dtype_name's names, in any case:
 * "q4_0", "bf16"); SKL_ERR_INVALID_ARG if unknown. */
SKL_API int skl_dtype_parse(const char *name, skl_dtype *out);

typedef enum skl_activation {
    SKL_ACT_SILU = 0,
    SKL_ACT_GELU = 1,       /* exact, erf form */
    SKL_ACT_GELU_TANH = 2,  /* gelu_new / gelu_pytorch_tanh */
    SKL_ACT_RELU = 3
} skl_activation;

typedef enum skl_block_type {
    SKL_BLOCK_SERIAL = 0,   /* x' = down(ffn(o(attn(x)))) */
    SKL_BLOCK_PARALLEL = 1  /* x' = o(attn(x)) + down(ffn(x)) */
} skl_block_type;

/* Filled by skl_model_hparams(model, &hp, sizeof hp). */
typedef struct skl_hparams {
    int32_t hidden_size;            /* d */
    int32_t num_hidden_layers;      /* L */
    int32_t num_attention_heads;    /* H */
    int32_t num_key_value_heads;    /* KV */
    int32_t head_dim;               /* hd */
    int32_t intermediate_size;      /* f */
    int32_t vocab_size;             /* V */
    int32_t max_position_embeddings;
    int32_t rotary_dim;             /* rotated dims per head (0: no RoPE) */
    skl_activation hidden_act;
    skl_block_type block_type;
    float rope_theta;
    float partial_rotary_factor;
    float rms_norm_eps;
    bool use_rope;                  /* position_embedding == "rope" */
    bool tie_word_embeddings;
    bool glu;                       /* mlp.gate_proj present */
    bool final_norm;                /* model.norm.weight present */
} skl_hparams;

/* Number of weights per kind (biases and norms counted apart); filled by
 * skl_model_weight_counts(model, &c, sizeof c). */
typedef struct skl_weight_counts {
    uint64_t embed, q, k, v, o, gate, up, down, head;
    uint64_t bias, norm;
    uint64_t linear_total;   /* embed + q + k + v + o + gate + up + down + head */
} skl_weight_counts;

typedef struct skl_model_params {
    uint32_t struct_size;       /* set by skl_model_params_init */
    skl_progress_fn progress;   /* called while weights are converted (not during
                                   the whole-file read of use_mmap = false); may cancel */
    void *progress_user_data;
    /* true (default): use the read-only file mapping in place, loaded lazily
     * and shared with other processes mapping the file (on 2 MiB pages where
     * the kernel allows; docs/performance.md, "Memory placement").  false:
     * read the whole file at load into anonymous memory on transparent huge
     * pages and drop the file's page cache afterwards. */
    bool use_mmap;
} skl_model_params;

/* Fill *params with the defaults and params->struct_size = size (pass
 * sizeof *params).  SKL_ERR_INVALID_ARG if params is NULL or size too small. */
SKL_API int skl_model_params_init(skl_model_params *params, size_t size);

/* Load a model: a directory holding config.json + model.safetensors (or a
 * sharded checkpoint: model.safetensors.index.json and the shards it names;
 * the index file itself may be passed for its directory), or one
 * .safetensors file whose __metadata__ "config" entry holds the config JSON.
 * The file is memory-mapped (or, with params->use_mmap false, read into
 * memory) and fully validated before use.  params may be NULL for defaults.
 * On failure *out is NULL.
 * The tokenizer, if any, is read too: tokenizer.json beside config.json, or
 * the string under __metadata__ "tokenizer.json" of a single file.  A
 * malformed one fails the load (SKL_ERR_TOKENIZER, or SKL_ERR_JSON /
 * SKL_ERR_DUPLICATE_KEY for invalid JSON); a well-formed one outside the
 * supported subset (docs/model-format.md) loads, and the tokenizer calls then
 * return SKL_ERR_UNSUPPORTED saying why.  config.json "eos_token_id" (an
 * integer >= 0, or a list whose first entry is used) is read for
 * skl_token_eos(). */
SKL_API int skl_model_load(const char *path, const skl_model_params *params, skl_model **out);
SKL_API void skl_model_free(skl_model *model);

/* Copy the model's hyperparameters into *out (size: sizeof *out). */
SKL_API int skl_model_hparams(const skl_model *model, skl_hparams *out, size_t size);
/* Bytes of weights one decoded token reads: every linear layer and the LM
 * head (biases and the final norm included) in their stored dtypes, plus one
 * embedding row.  A quantized weight counts its packed weights and its F16
 * scales (since 1.2).  0 for a NULL model. */
SKL_API uint64_t skl_model_decode_bytes(const skl_model *model);
/* Where those bytes are: one region per tensor a decode step reads in full
 * (every present linear weight, its scales when quantized, and its bias, of
 * every block in evaluation order, then the final norm and lm_head), and last
 * the first row of the embedding,
 * standing for the row of the token (each token reads one).  The sizes sum to
 * skl_model_decode_bytes().  Fills bases[i] and sizes[i] for i < n_max and
 * sets *n_regions to the number of regions; SKL_ERR_BUFFER_TOO_SMALL if
 * n_max is smaller (bases and sizes may be NULL when n_max is 0).  The
 * memory belongs to the model: read it, never write it. */
SKL_API int skl_model_decode_regions(const skl_model *model, const void **bases, uint64_t *sizes, size_t n_max,
                                     size_t *n_regions);
/* Bytes of all the weights the model holds, in their stored dtypes: every
 * tensor once (the whole embedding; a tied lm_head is the embedding and not
 * counted again; biases, norms and quantization scales included).  For a
 * model loaded from a file these are the bytes of its tensors (a 4-bit
 * weight's 16-byte weight_shape excepted).  0 for a NULL model.  Since 1.1. */
SKL_API uint64_t skl_model_weight_bytes(const skl_model *model);
/* Storage dtype of the linear layers and lm_head: "F32", "F16", "BF16",
 * "Q8_0", "Q4_0" (skl_dtype_name), or "mixed" (a merge stored its new tensors
 * in another dtype, or some layers were kept unquantized); NULL for a NULL
 * model. */
SKL_API const char *skl_model_weight_dtype(const skl_model *model);
/* Since 1.2: how many weights of the linear layers and lm_head (a tied head
 * counted, as in skl_weight_counts.head; biases not) are stored in `dtype`;
 * 0 for a NULL model or a dtype no weight has. */
SKL_API uint64_t skl_model_dtype_weights(const skl_model *model, skl_dtype dtype);
/* Count the model's weights into *out (size: sizeof *out). */
SKL_API int skl_model_weight_counts(const skl_model *model, skl_weight_counts *out, size_t size);

/* Whether projection `which` ('q', 'k', 'v' or 'o') of layer `layer` is
 * present (false: the identity).  Returns 1, 0, or a negative status. */
SKL_API int skl_model_has_proj(const skl_model *model, int32_t layer, char which);

/* ----------------------------------------------------------------- context */

typedef struct skl_context skl_context;

typedef struct skl_context_params {
    uint32_t struct_size;   /* set by skl_context_params_init */
    int32_t n_ctx;          /* KV cache length; 0: max_position_embeddings */
    int32_t n_threads;      /* threads for this context (>= 1); default 1 */
    int32_t n_batch;        /* max tokens per internal forward batch; default 256 */
    bool logits_all;        /* keep logits of every evaluated token, not only the last */
} skl_context_params;

/* Defaults into *params, struct_size = size (pass sizeof *params). */
SKL_API int skl_context_params_init(skl_context_params *params, size_t size);
/* params may be NULL for defaults. */
SKL_API int skl_context_create(const skl_model *model, const skl_context_params *params,
                               skl_context **out);
SKL_API void skl_context_free(skl_context *ctx);

/* Append n tokens at the current position and run them through the model,
 * in chunks of at most n_batch tokens: a chunk of several tokens goes through
 * the batched (prefill, sgemm) path, a single token the decode path (the GEMV kernels of
 * skl_cpu_kernels() on the context's thread pool).
 * Errors (SKL_ERR_TOKEN, SKL_ERR_CONTEXT_FULL, ...) leave the context as it was. */
SKL_API int skl_eval(skl_context *ctx, const int32_t *tokens, int32_t n_tokens);

/* Logits of the last skl_eval: with logits_all, rows for each of its tokens,
 * else one row for its last token.  Returns a pointer to [*n_rows, vocab]
 * floats owned by the context, valid until the next eval/truncate/free;
 * NULL (and *n_rows = 0) before any eval. n_rows may be NULL. */
SKL_API const float *skl_logits(const skl_context *ctx, int32_t *n_rows);

SKL_API int32_t skl_context_n_past(const skl_context *ctx); /* tokens in the cache */
SKL_API int32_t skl_context_n_ctx(const skl_context *ctx);  /* cache capacity */
/* Keep the first n_keep tokens of the KV cache, drop the rest. */
SKL_API int skl_kv_truncate(skl_context *ctx, int32_t n_keep);
/* Empty the KV cache (skl_kv_truncate(ctx, 0)). */
SKL_API int skl_kv_reset(skl_context *ctx);
/* Bytes of the KV cache a context of n_ctx positions allocates (0:
 * max_position_embeddings): 2 * num_hidden_layers * n_ctx *
 * num_key_value_heads * head_dim floats.  The context's scratch comes on top.
 * 0 for a NULL model or n_ctx outside [0, max_position_embeddings];
 * UINT64_MAX if the product does not fit in 64 bits.  Since 1.1. */
SKL_API uint64_t skl_model_kv_bytes(const skl_model *model, int32_t n_ctx);

/* ---------------------------------------------------------------- sampling */

/* RNG: xoshiro256** (Blackman & Vigna) seeded by four outputs of splitmix64(seed);
 * one uniform double in [0,1) per sampled token: (next() >> 11) * 2^-53.
 * Same seed, model and thread count give the same tokens. */
typedef struct skl_sampler_params {
    uint32_t struct_size; /* set by skl_sampler_params_init */
    float temperature;  /* 0: greedy (argmax, lowest id on ties); default 0.8 */
    int32_t top_k;      /* keep the k most likely tokens; 0: all; default 40 */
    float top_p;        /* keep the smallest set with mass >= p; 1: all; default 0.95 */
    uint64_t seed;      /* default 0x5EED */
} skl_sampler_params;

typedef struct skl_sampler skl_sampler;

/* Defaults into *params, struct_size = size (pass sizeof *params). */
SKL_API int skl_sampler_params_init(skl_sampler_params *params, size_t size);
/* params may be NULL for defaults. */
SKL_API int skl_sampler_create(const skl_sampler_params *params, skl_sampler **out);
SKL_API void skl_sampler_free(skl_sampler *sampler);
/* Sample a token id from logits[n_vocab]. */
SKL_API int skl_sample(skl_sampler *sampler, const float *logits, int32_t n_vocab,
                       int32_t *token);

/* --------------------------------------------------------------- tokenizer */

/* Hugging Face tokenizer.json, byte-level BPE (GPT-2 family; the subset is in
 * docs/model-format.md).  The tokenizer belongs to the immutable model: these
 * calls may run concurrently on one model.  Token ids are the tokenizer's:
 * skl_tokenizer_size() may differ from hparams.vocab_size.  Ids >= vocab_size
 * cannot be evaluated (skl_eval: SKL_ERR_TOKEN); ids the model can produce but
 * the tokenizer does not know have no text (SKL_ERR_TOKEN when decoded). */

/* Does the model carry a usable tokenizer (present and supported)? */
SKL_API bool skl_model_has_tokenizer(const skl_model *model);
/* Number of token ids the tokenizer knows (vocab + added tokens), 0 if none
 * or unsupported. */
SKL_API int32_t skl_tokenizer_size(const skl_model *model);
/* Id of the end-of-text token: config.json "eos_token_id" if present, else the
 * added special token "<|endoftext|>" if present, else -1. */
SKL_API int32_t skl_token_eos(const skl_model *model);

#define SKL_TOKENIZE_PLAIN 1u  /* treat added/special token text as plain text */

/* Text (UTF-8, text_len bytes, may contain NUL) -> ids.  No BOS/EOS added.
 * Added tokens occurring in the text are recognised unless flags has
 * SKL_TOKENIZE_PLAIN.  *n_tokens receives the count; if it exceeds n_max,
 * returns SKL_ERR_BUFFER_TOO_SMALL with *n_tokens set to the count needed
 * (tokens may be NULL when n_max == 0 to query the size).  Invalid UTF-8 in
 * text -> SKL_ERR_INVALID_ARG naming the byte offset.  No tokenizer:
 * SKL_ERR_NO_TOKENIZER; unsupported one: SKL_ERR_UNSUPPORTED. */
SKL_API int skl_tokenize(const skl_model *model, const char *text, size_t text_len, int32_t *tokens,
                         size_t n_max, size_t *n_tokens, unsigned flags);

/* Ids -> UTF-8 text, NUL-terminated, as Hugging Face decodes it (byte-level
 * decoding; invalid or incomplete UTF-8 sequences become U+FFFD; special
 * tokens included as their text).  *text_len receives the length without the
 * NUL; if text_cap < length + 1 returns SKL_ERR_BUFFER_TOO_SMALL with
 * *text_len set to the length needed (text may be NULL when text_cap == 0).
 * An id outside [0, skl_tokenizer_size) -> SKL_ERR_TOKEN. */
SKL_API int skl_detokenize(const skl_model *model, const int32_t *tokens, size_t n_tokens, char *text,
                           size_t text_cap, size_t *text_len);

/* Streaming decoder: feed ids one at a time, get the text that became
 * complete.  Never emits part of a UTF-8 character; bytes of an unfinished
 * character are held back until completed (or emitted as U+FFFD when they can
 * no longer complete, or at flush).  The pieces of a sequence concatenate to
 * skl_detokenize() of it.  One thread at a time per decoder; free it before
 * its model. */
typedef struct skl_detokenizer skl_detokenizer;
SKL_API int skl_detokenizer_create(const skl_model *model, skl_detokenizer **out);
/* *piece points to NUL-terminated text owned by the decoder, valid until the
 * next call; may be "" (piece_len 0; piece_len may be NULL).  SKL_ERR_TOKEN
 * for a bad id (decoder state unchanged). */
SKL_API int skl_detokenizer_push(skl_detokenizer *d, int32_t token, const char **piece, size_t *piece_len);
/* Emit what is held back (as U+FFFD) and reset the decoder. */
SKL_API int skl_detokenizer_flush(skl_detokenizer *d, const char **piece, size_t *piece_len);
SKL_API void skl_detokenizer_free(skl_detokenizer *d);

/* -------------------------------------------------------------- generation */

typedef struct skl_generate_params {
    uint32_t struct_size;        /* set by skl_generate_params_init */
    const skl_sampler_params *sampling; /* NULL (default): skl_sampler_params_init's defaults;
                                    read when generation starts */
    int32_t max_tokens;          /* tokens to generate at most; default 128 */
    const int32_t *stop_tokens;  /* ending generation, not passed on (copied at the start) */
    int32_t n_stop_tokens;
} skl_generate_params;

typedef enum skl_stop_reason {
    SKL_STOP_MAX_TOKENS = 0,
    SKL_STOP_STOP_TOKEN = 1,
    SKL_STOP_CALLBACK = 2,        /* on_token returned nonzero (skl_generate) */
    SKL_STOP_CONTEXT_FULL = 3,
    SKL_STOP_ERROR = 4            /* an error inside the loop, returned by the call that met it */
} skl_stop_reason;

/* Filled by skl_generator_result() and skl_generate(). */
typedef struct skl_generate_result {
    int32_t n_generated;          /* tokens handed out */
    int32_t stop_token;           /* the stop token seen, or -1 */
    skl_stop_reason stop_reason;  /* meaningful once generation has ended */
    double prompt_seconds;        /* wall time of the prompt eval */
    double decode_seconds;        /* wall time since, in the generator's calls */
} skl_generate_result;

/* Defaults into *params, struct_size = size (pass sizeof *params). */
SKL_API int skl_generate_params_init(skl_generate_params *params, size_t size);

/* Pull-style generation.  skl_generator_create evaluates the prompt (appended
 * to what the context already holds; SKL_ERR_CONTEXT_FULL if it does not
 * fit) and prepares the sampler; params may be NULL for defaults.  Each
 * skl_generator_next then samples one token, evaluates the previous one
 * first, and gives back
 *  - *token >= 0 and *piece, the text that token completes when the model
 *    has a tokenizer ("" while a multi-byte character is pending), or NULL
 *    when it has none; or
 *  - *token = -1 when generation has ended (max_tokens, a stop token, or the
 *    context full: skl_generator_result says which), with *piece the bytes
 *    still pending ("" if none; NULL without a tokenizer).  Later calls give
 *    -1 and "" again.
 * token and piece must not be NULL, piece_len may be; *piece is owned by
 * the generator, valid until its next call.  An error ends generation with SKL_STOP_ERROR and is
 * returned.  The caller may stop at any time by freeing the generator; the
 * context then holds the prompt and every token handed out except the last. */
typedef struct skl_generator skl_generator;
SKL_API int skl_generator_create(skl_context *ctx, const int32_t *prompt_tokens, int32_t n_prompt,
                                 const skl_generate_params *params, skl_generator **out);
SKL_API int skl_generator_next(skl_generator *gen, int32_t *token, const char **piece, size_t *piece_len);
/* Counts and timings so far (size: sizeof *out). */
SKL_API int skl_generator_result(const skl_generator *gen, skl_generate_result *out, size_t size);
SKL_API void skl_generator_free(skl_generator *gen);

/* Called by skl_generate for each generated token with its text piece (as
 * skl_generator_next gives it).  Bytes still pending when generation ends
 * are delivered by one last call with token = -1 (its return value is
 * ignored).  Return nonzero to stop. */
typedef int (*skl_token_fn)(int32_t token, const char *piece, void *user_data);

/* A loop over a generator: evaluate the prompt, then sample and stream up
 * to max_tokens tokens to on_token.  on_token may be NULL; result may be
 * NULL (then result_size is ignored).  Returns SKL_ERR_CONTEXT_FULL only if
 * the prompt itself does not fit; running out of context later ends with
 * SKL_STOP_CONTEXT_FULL. */
SKL_API int skl_generate(skl_context *ctx, const int32_t *prompt_tokens, int32_t n_prompt,
                         const skl_generate_params *params, skl_token_fn on_token,
                         void *user_data, skl_generate_result *result, size_t result_size);

/* ------------------------------------------------------------------- merge */

/* Which weights to remove (paper: arXiv 2404.12362; docs/merge.md).
 * Serial blocks:   QP, KP, VP remove that projection and o_proj (the paper's P)
 *                  from every block; exact.  KP and VP need k/v square (MHA).
 * Parallel blocks: Q removes q_proj from every block (exact, any attention);
 *                  P removes o_proj from every block but a last one followed
 *                  by a final norm (exact when o_proj is invertible).
 * AUTO picks the applicable exact removal that saves the most weights. */
typedef enum skl_removal {
    SKL_REMOVE_AUTO = 0,
    SKL_REMOVE_QP = 1,
    SKL_REMOVE_KP = 2,
    SKL_REMOVE_VP = 3,
    SKL_REMOVE_Q = 4,
    SKL_REMOVE_P = 5
} skl_removal;

/* Name of a removal ("auto", "qp", "kp", "vp", "q", "p"); NULL if unknown. */
SKL_API const char *skl_removal_name(skl_removal r);
/* Parse a removal name; SKL_ERR_INVALID_ARG if unknown. */
SKL_API int skl_removal_parse(const char *name, skl_removal *out);

typedef struct skl_merge_params {
    uint32_t struct_size;        /* set by skl_merge_params_init */
    skl_removal remove;          /* default SKL_REMOVE_AUTO */
    bool verify;                 /* run both models on probe tokens; default true */
    int32_t n_probe_tokens;      /* default 32 (capped at max_position_embeddings) */
    uint64_t probe_seed;         /* default 1 */
    double max_condition;        /* refuse an inversion above this condition number;
                                    0 (default): 0.01 / float32 unit roundoff = 1.68e5 */
    skl_progress_fn progress;    /* per block; nonzero return cancels (SKL_ERR_CANCELLED) */
    void *progress_user_data;
    skl_dtype dtype;             /* storage of the changed tensors: SKL_DTYPE_F32 (default),
                                    F16, BF16, or SAME (each like the tensor it replaces; a
                                    bias that did not exist like the embedding).  The merge
                                    itself runs in float64 whatever the source dtype.
                                    Since 1.2: Q8_0 or Q4_0 quantizes every linear weight of
                                    the result (lm_head included) once, the changed ones
                                    from float64 (as skl_model_quantize_to chooses, `keep`
                                    below); the embedding and biases are stored as SAME
                                    stores them. */
    /* Since 1.2, with dtype Q8_0 / Q4_0: linear layers left unquantized, as
     * skl_quantize_params.keep (NULL: none). */
    const char *const *keep;
    int32_t n_keep;
} skl_merge_params;

/* One block of a merge report (skl_merge_report_layer). */
typedef struct skl_merge_layer {
    int32_t layer;
    bool removed_q, removed_k, removed_v, removed_o;
    uint64_t weights_before;     /* q + k + v + o + gate + up + down of this block */
    uint64_t weights_after;
    double condition;            /* 1-norm condition estimate (dgecon) of the inverted matrix; 0: none */
    double residual;             /* max relative residual |X* A - X|_F / |X|_F of its solves, float32 X* */
} skl_merge_layer;

/* Allocated by skl_model_merge, freed by skl_merge_report_free. */
typedef struct skl_merge_report {
    skl_removal removal;         /* the removal applied (AUTO resolved) */
    int32_t n_layers;            /* blocks: skl_merge_report_layer(report, 0 .. n_layers-1) */
    uint64_t weights_before;     /* linear layers + embeddings, as skl_weight_counts.linear_total */
    uint64_t weights_after;
    double max_condition;
    double max_residual;
    double verify_error;         /* max |merged - original| / max |original| over probe logits; -1: not run;
                                    +inf: a merged logit is not finite; NaN (since 1.1): inconclusive, the
                                    original's own probe logits are all zero or not all finite */
    int32_t n_probe_tokens;
    double seconds;
} skl_merge_report;

/* Defaults into *params, struct_size = size (pass sizeof *params). */
SKL_API int skl_merge_params_init(skl_merge_params *params, size_t size);
/* Build a merged copy of `model` in *out.  `model` is never modified: the
 * copy shares every unchanged tensor with it (reference counted) and owns new
 * storage (in skl_merge_params.dtype) only for the changed ones, so the extra memory is the size of
 * the changed matrices plus float64 scratch for one block (docs/merge.md).
 * With dtype Q8_0 / Q4_0 (since 1.2) the copy holds every linear weight
 * quantized, as skl_model_merge_to writes it (so skl_model_save of it writes
 * the same files), the unchanged ones quantized from their stored dtype.
 * params may be NULL for defaults.  On failure *out is NULL.  report may be
 * NULL; otherwise free it with skl_merge_report_free(). */
SKL_API int skl_model_merge(const skl_model *model, const skl_merge_params *params, skl_model **out,
                            skl_merge_report **report);
/* Block i of the report; NULL if i is outside [0, n_layers). */
SKL_API const skl_merge_layer *skl_merge_report_layer(const skl_merge_report *report, int32_t i);
SKL_API void skl_merge_report_free(skl_merge_report *report);

/* Weight accounting of every removal for a model shape (paper's counting:
 * linear layers plus input and output embeddings; biases and norms ignored). */
typedef struct skl_plan_row {
    skl_removal removal;
    bool applicable;             /* shapes allow it */
    bool lossless;               /* an exact conversion of a trained model */
    uint64_t total, removed, after;
    double saving_percent;       /* 100 * removed / total */
    double speedup_bound;        /* total / after: batch-1 decode bound */
    const char *note;            /* why (not) applicable; owned by the library, never NULL */
} skl_plan_row;

/* Allocated by skl_plan_config / skl_model_plan, freed by skl_plan_free. */
typedef struct skl_plan {
    skl_block_type block_type;
    int32_t hidden_size, kv_dim, intermediate_size, num_hidden_layers, vocab_size;
    bool glu, final_norm;
    uint64_t total;
    int32_t n_rows;              /* rows: skl_plan_row_at(plan, 0 .. n_rows-1) */
} skl_plan;

/* From a config file (ours, or Hugging Face Llama / Mistral / GPT-NeoX
 * families; "use_parallel_residual" means parallel blocks); no weights needed.
 * On failure *out is NULL. */
SKL_API int skl_plan_config(const char *config_path, skl_plan **out);
/* For a loaded model, from its actual shapes (counts the original model's
 * removal options; an already-merged model shows what is left). */
SKL_API int skl_model_plan(const skl_model *model, skl_plan **out);
/* Row i of the plan; NULL if i is outside [0, n_rows). */
SKL_API const skl_plan_row *skl_plan_row_at(const skl_plan *plan, int32_t i);
SKL_API void skl_plan_free(skl_plan *plan);

/* -------------------------------------------------------------------- save */

typedef enum skl_save_format {
    SKL_SAVE_AUTO = 0,  /* FILE if path ends in ".safetensors", else DIR */
    SKL_SAVE_DIR = 1,   /* path/config.json + path/model.safetensors (or its shards + index) */
    SKL_SAVE_FILE = 2   /* one .safetensors with __metadata__.config */
} skl_save_format;

/* Write the model (each tensor in its in-memory dtype: the file's dtype for
 * loaded tensors, skl_merge_params.dtype for merged ones; quantized ones as
 * compressed-tensors lays them out, with the config's "quantization_config"
 * written to describe them) so that
 * skl_model_load reads it back bit for bit; the config records merges applied
 * ("skipless_merge"); the tokenizer.json the model was loaded with is written
 * verbatim (directory: tokenizer.json; single file: __metadata__
 * "tokenizer.json").  Files are written to a
 * temporary name and renamed, so a failure leaves no partial model. */
SKL_API int skl_model_save(const skl_model *model, const char *path, skl_save_format format);

/* Since 1.1: saving with parameters, sharded as Hugging Face does.
 * Hugging Face's default shard limit: 5 GB (decimal). */
#define SKL_SAVE_DEFAULT_MAX_SHARD_SIZE 5000000000ull

typedef struct skl_save_params {
    uint32_t struct_size;      /* set by skl_save_params_init */
    skl_save_format format;    /* default SKL_SAVE_AUTO */
    /* A directory's weights are split into shards of at most this many bytes
     * of tensor data (a larger tensor alone in its shard):
     * model-00001-of-0000N.safetensors ... + model.safetensors.index.json, as
     * Hugging Face writes them; a model that fits is one model.safetensors.
     * 0: the default, SKL_SAVE_DEFAULT_MAX_SHARD_SIZE.  SKL_SAVE_FILE writes
     * one file whatever its size. */
    uint64_t max_shard_size;
} skl_save_params;

/* Fill *params with the defaults and params->struct_size = size (pass
 * sizeof *params).  SKL_ERR_INVALID_ARG if params is NULL or size too small. */
SKL_API int skl_save_params_init(skl_save_params *params, size_t size);
/* skl_model_save with parameters (NULL: the defaults).  skl_model_save(m,
 * path, fmt) is this call with format fmt and the default shard limit.  Every
 * file (shards, index, config.json, tokenizer.json) is written under a
 * temporary name in the directory and renamed only when all were written; a
 * failure (a full disk included) removes the temporaries and leaves an
 * existing model at path untouched.  After the renames, the files of an
 * earlier save that the new layout does not use (model.safetensors, the index,
 * model-*-of-*.safetensors) are removed.  Since 1.2: the temporaries have
 * names of their own, created exclusively (an existing file or symlink is
 * never followed; concurrent saves do not collide); the renames and removals
 * are undone if one of them fails; a path that is where the model (or the
 * model it was merged from) was loaded from is SKL_ERR_SAME_AS_SOURCE. */
SKL_API int skl_model_save_v2(const skl_model *model, const char *path, const skl_save_params *params);

/* Since 1.1: the streaming merge, for models larger than memory.  Merge
 * `model` (loaded in place: its tensors are read through the file mapping)
 * and save the result at `path` as skl_model_save_v2(merged, path, save)
 * would, with the same tensors bit for bit as skl_model_merge's, but without
 * building the merged model: each merged tensor is written as soon as it is
 * final and released, unchanged ones are copied from the mapping, so the
 * extra memory is about one block's changed tensors plus its float64 scratch
 * (the embedding's in block 0), not the model (docs/merge.md).  The headers
 * are fixed first by a pass over the blocks without arithmetic.  params and
 * save may be NULL for the defaults; params->progress is called after each
 * block is written.  With params->verify the written model is loaded and run
 * on the probe tokens against `model` (the report's verify_error).  Failure
 * (cancel through the progress callback and a full disk included) removes
 * every temporary and leaves an existing model at path untouched; only a
 * failure of the verify step itself (it runs after the renames) returns an
 * error with the output written.  report may be NULL; otherwise free it with
 * skl_merge_report_free(). */
SKL_API int skl_model_merge_to(const skl_model *model, const char *path, const skl_merge_params *params,
                               const skl_save_params *save, skl_merge_report **report);

/* ---------------------------------------------------------------- quantize */

/* Since 1.2: quantizing a model's linear layers (docs/quantization.md). */
typedef struct skl_quantize_params {
    uint32_t struct_size;      /* set by skl_quantize_params_init */
    skl_dtype dtype;           /* SKL_DTYPE_Q8_0 (default) or SKL_DTYPE_Q4_0 */
    /* Linear layers to leave in their stored dtype: a layer's module name
     * ("lm_head", "model.layers.3.mlp.down_proj") or a projection of every
     * block ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
     * "down_proj"); n_keep entries (keep may be NULL when n_keep is 0).  A
     * name that is no linear layer of the model is SKL_ERR_INVALID_ARG. */
    const char *const *keep;
    int32_t n_keep;
    skl_progress_fn progress;  /* per block written (the head counts as one); nonzero cancels */
    void *progress_user_data;
} skl_quantize_params;

/* Fill *params with the defaults and params->struct_size = size (pass
 * sizeof *params).  SKL_ERR_INVALID_ARG if params is NULL or size too small. */
SKL_API int skl_quantize_params_init(skl_quantize_params *params, size_t size);
/* Quantize `model` and save it at `path` as skl_model_save_v2 would (save:
 * format and shards; NULL: defaults), streaming: each tensor is read from
 * the model (in place: through the file mapping), quantized and written
 * before the next, so the extra memory is about one tensor.  Every linear
 * weight (q, k, v, o, gate, up, down of each block, and lm_head: a tied one
 * becomes its own quantized matrix) is quantized from its stored dtype,
 * except those in params->keep and those whose input size is not a multiple
 * of 32 (kept, with an SKL_LOG_WARN line naming them); the embedding, biases
 * and the norm are copied unchanged.  Round to nearest, one scale per 32
 * consecutive inputs of a row as llama.cpp's Q8_0 and Q4_0 choose them
 * (docs/quantization.md).  config.json gets the compressed-tensors
 * "quantization_config" describing the result.  Failure (cancel and a full
 * disk included) removes every temporary and leaves an existing model at
 * path untouched.  params may be NULL for the defaults. */
SKL_API int skl_model_quantize_to(const skl_model *model, const char *path, const skl_quantize_params *params,
                                  const skl_save_params *save);

/* -------------------------------------------------------------------- BLAS */

/* OpenBLAS picks its kernels ("core") from the CPU model number, and releases
 * older than the CPU fall back to slow generic ones.  Once per process, at the
 * start of the first skl_model_load() or skl_blas_get_info(), libskipless
 * checks the core of a dynamically linked OpenBLAS and, when
 * OPENBLAS_CORETYPE is not set and the core targets an older instruction set
 * than the CPU supports, re-initialises OpenBLAS with the matching core
 * (setting OPENBLAS_CORETYPE around the re-initialisation and unsetting it
 * again); the log callback says what was done.  Setting OPENBLAS_CORETYPE
 * yourself keeps your choice.  Details: docs/api.md, "BLAS core check". */
typedef struct skl_blas_info {
    bool openblas;           /* the BLAS is a dynamically linked OpenBLAS */
    bool user_coretype;      /* OPENBLAS_CORETYPE was set: the user's core */
    bool core_changed;       /* libskipless re-initialised OpenBLAS with `core` */
    bool auto_core;          /* the check was enabled (skl_blas_set_auto_core) */
    const char *detected_core; /* core OpenBLAS chose itself ("" if not OpenBLAS) */
    const char *core;        /* core in use after the check ("" if not OpenBLAS) */
    const char *cpu_isa;     /* best vector ISA of the CPU: "AVX-512", "AVX2", "AVX", "SSE";
                                "unknown" off x86-64 */
} skl_blas_info;

/* Run the check above if it has not run yet, and describe the BLAS in use
 * (size: sizeof *out; the strings are static). */
SKL_API int skl_blas_get_info(skl_blas_info *out, size_t size);
/* enable = false: never touch OpenBLAS's core (for a host program that
 * manages OpenBLAS itself); true is the default.  Call it before the first
 * skl_model_load() or skl_blas_get_info(); afterwards the check has run and
 * this returns SKL_ERR_INVALID_ARG, changing nothing. */
SKL_API int skl_blas_set_auto_core(bool enable);

#ifdef __cplusplus
}
#endif

#endif /* SKIPLESS_H */
