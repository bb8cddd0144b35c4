"""A small convnet for image classification: the HyperModel the image-folder presets sweep."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner as kt

from ktsweep.conf.schema import CNNSpace
from ktsweep.hypermodels.base import SweepHyperModel
from ktsweep.hypermodels.space import declare


class CNNClassifier(SweepHyperModel):
    """Rescaling, ``conv_blocks`` x (Conv2D, MaxPool), dropout, a dense head, softmax; judged by val_accuracy.

    Block ``i`` has ``filters * 2**i`` filters; it pools only while the feature map is at least 2
    pixels wide, so the same space fits 8x8 digits and 224x224 photos. Pixels are rescaled inside
    the model, so the saved model takes images as the folder gives them."""

    def __init__(self, *, space: CNNSpace, rescale: float = 1 / 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.space = space
        self.rescale = rescale

    def declare(self, hp: kt.HyperParameters) -> dict[str, Any]:
        names = ("conv_blocks", "filters", "kernel_size", "dropout", "dense_units", "learning_rate")
        return {name: declare(hp, name, getattr(self.space, name)) for name in names}

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        values = self.declare(hp)
        shape = tuple(self.spec.input_shape)
        inputs = keras.Input(shape=shape if len(shape) == 3 else (*shape, 1))
        x = keras.layers.Rescaling(self.rescale)(inputs)
        size = min(inputs.shape[1], inputs.shape[2])
        for block in range(values["conv_blocks"]):
            x = keras.layers.Conv2D(values["filters"] * 2**block, values["kernel_size"], padding="same",
                                    activation="relu")(x)
            if size >= 2:
                x = keras.layers.MaxPooling2D()(x)
                size //= 2
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dropout(values["dropout"])(x)
        x = keras.layers.Dense(values["dense_units"], activation="relu")(x)
        outputs = keras.layers.Dense(self.spec.n_classes, activation="softmax")(x)
        model = keras.Model(inputs, outputs, name="cnn_classifier")
        model.compile(optimizer=keras.optimizers.Adam(values["learning_rate"]),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
