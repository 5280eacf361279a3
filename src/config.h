/* config.h - the model config (config.c): Hugging Face config.json keys plus ours. */
#ifndef SKL_CONFIG_H
#define SKL_CONFIG_H

#include "json.h"

/* Fill hp from a config object (tensor-dependent fields glu/final_norm left false). */
int skl_config_parse(const json_t *cfg, const char *what, skl_hparams *hp);
/* config "eos_token_id": *out = the id (the first of a list), -1 if absent. */
int skl_config_eos(const json_t *cfg, const char *what, int32_t *out);

#endif
