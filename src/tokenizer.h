/* tokenizer.h - a parsed tokenizer.json (tokenizer.c). */
#ifndef SKL_TOKENIZER_H
#define SKL_TOKENIZER_H

#include "error.h"

/* A parsed tokenizer.json, reference counted (a merged model shares its
 * source's). */
typedef struct skl_tok skl_tok;
/* Parse tokenizer.json text; `what` names it in messages.  A well-formed but
 * unsupported file gives a tokenizer whose calls fail with SKL_ERR_UNSUPPORTED. */
int skl_tok_load(const char *text, size_t len, const char *what, skl_tok **out);
skl_tok *skl_tok_retain(skl_tok *t);
void skl_tok_release(skl_tok *t);
/* The JSON text as loaded (for save). */
const char *skl_tok_text(const skl_tok *t, size_t *len);

#endif
