/* Turning a recipe into the objects a run needs: loader configs, the model (random or from an
 * init checkpoint), the frozen teacher. Shared by `tpsc train`, `tpsc eval` and sweeps. */
#ifndef TPSC_TRAIN_SETUP_H
#define TPSC_TRAIN_SETUP_H

#include "data/loader.h"
#include "src/objective/objective.h"
#include "src/recipe/recipe.h"

/* The loader config of a split, from [data], [augment], [model] and [run] seed. */
void tpsc_data_config_from_recipe(const tpsc_recipe *r, tpsc_split split, tpsc_data_config *dc);
objective_config tpsc_loss_config_from_recipe(const tpsc_recipe *r);

/* Creates the model of the recipe with num_classes from the data, initialises it from the
 * run's seed, then loads model.init if set: tensors the init file lacks (the predictors, when
 * starting dTPS from dense weights) keep their initialisation and are logged by name, unless
 * model.init_strict. */
tpsc_status tpsc_build_model(const tpsc_recipe *r, vit_model *m);

/* Loads a dense teacher from a checkpoint, all parameters frozen. */
tpsc_status tpsc_build_teacher(const char *path, vit_model *teacher);

/* mkdir -p */
tpsc_status tpsc_mkdirs(const char *path);

#endif
