"""Fit a linear model with three heads on scikit-learn-free synthetic data: the heads in one loop."""

import torch

from lossbench import get_head

torch.manual_seed(0)
x = torch.randn(512, 16)
y = (x[:, :4].sum(-1) > 0).long() + (x[:, 4:8].sum(-1) > 1).long()  # 3 classes

for name in ("ce", "focal", "square"):
    torch.manual_seed(1)
    head = get_head(name, in_features=16, num_classes=3)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    for step in range(100):
        opt.zero_grad()
        loss = head.loss(head(x), y)
        loss.backward()
        opt.step()
    accuracy = (head.predict(head(x)) == y).float().mean()
    print(f"{name:8s} final loss {loss.item():.4f}  train accuracy {accuracy:.3f}")
