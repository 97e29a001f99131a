"""Neural-network building blocks: functional ops (cnnlab.nn.functional) and modules."""

from cnnlab.nn import functional
