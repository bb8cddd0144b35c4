"""A Keras Tuner user's own code, as the Keras Tuner tutorials write it (nothing ktsweep-specific)."""

import keras
import keras_tuner as kt
from keras import layers


def build_model(hp):
    model = keras.Sequential()
    model.add(layers.Flatten())
    model.add(layers.Dense(units=hp.Int("units", min_value=16, max_value=64, step=16), activation="relu"))
    if hp.Boolean("dropout"):
        model.add(layers.Dropout(rate=0.25))
    model.add(layers.Dense(10, activation="softmax"))
    learning_rate = hp.Float("lr", min_value=1e-3, max_value=1e-2, sampling="log")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class MyClassificationHyperModel(kt.HyperModel):
    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, x, y, validation_data=None, **kwargs):
        if hp.Boolean("normalize"):
            normalizer = layers.Normalization()
            normalizer.adapt(x)
            x = normalizer(x)
            if validation_data:
                x_val, y_val = validation_data
                validation_data = (normalizer(x_val), y_val)
        return model.fit(x, y, validation_data=validation_data, **kwargs)


def build_conditional(hp):
    """A space with a conditional scope (``parent_name``/``conditional_scope``), as in Keras Tuner's docs."""
    model = keras.Sequential([layers.Flatten()])
    kind = hp.Choice("model_type", ["small", "wide"])
    with hp.conditional_scope("model_type", "small"):
        if kind == "small":
            model.add(layers.Dense(hp.Int("small_units", 8, 16, step=8), activation="relu"))
    with hp.conditional_scope("model_type", "wide"):
        if kind == "wide":
            model.add(layers.Dense(hp.Int("wide_units", 32, 64, step=32), activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def returns_nothing(hp):
    hp.Int("units", 8, 16)
    return None
