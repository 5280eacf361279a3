/* save.h - the one writer of saved models (save.c), for skl_model_save_v2 and
 * the streaming merge (merge.c).
 *
 * The layout (tensor names, dtypes, shapes; the config and tokenizer) is
 * fixed when the writer is opened, so every header is known before any data;
 * then the data goes out tensor by tensor in file order, from whatever model
 * holds each tensor when it is final. */
#ifndef SKL_SAVE_H
#define SKL_SAVE_H

typedef struct skl_writer skl_writer;

/* Plan the files of `layout` at path (params as skl_model_save_v2's, NULL:
 * defaults); nothing is renamed into place before skl_writer_finish.  Only
 * the shapes and dtypes of layout's tensors are read (their data may be a
 * placeholder); layout must outlive the writer. */
int skl_writer_open(const skl_model *layout, const char *path, const skl_save_params *params, skl_writer **out);
/* Write, in file order, the next tensors of the layout that belong before
 * block `until` (the embedding counts as block -1; the final norm and the
 * head as block num_hidden_layers), each taken from m by name: it must have
 * the layout's dtype and shape. */
int skl_writer_put(skl_writer *w, const skl_model *m, int32_t until);
/* All tensors written: write the index, config and tokenizer, rename every
 * file into place, remove stale files of an earlier save, free w. */
int skl_writer_finish(skl_writer *w);
/* Remove the temporaries and free w (NULL: no-op). */
void skl_writer_abort(skl_writer *w);

#endif
