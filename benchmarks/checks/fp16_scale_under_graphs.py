import tempfile

import torch

import cnnbench.train as t

make = torch.amp.GradScaler
torch.amp.GradScaler = lambda *a, **k: make(*a, init_scale=1.0, growth_interval=1, **k)


def lazy(self):  # the scaler as it was: its scale tensor created at first use, inside the capture
    return torch.amp.GradScaler(self.device.split(":")[0], enabled=True)


for name, patch in (("scale allocated before capture", None), ("scale allocated lazily", lazy)):
    if patch:
        t.Trainer._new_scaler = patch
    run = t.train(
        t.TrainConfig(
            model="cnn_dropout",
            dataset="synthetic",
            epochs=3,
            batch_size=64,
            out=tempfile.mkdtemp(),
            synthetic_size=1000,
            input_size=(3, 32, 32),
            num_classes=10,
            device="cuda",
            step_size=2,
            precision="fp16",
        )
    )
    scale = torch.load(run.run_dir / "last.pt", weights_only=False)["scaler"]["scale"]
    print(f"{name}: final scale {scale:g}, train loss {[round(e.train_loss, 3) for e in run.epochs]}")
