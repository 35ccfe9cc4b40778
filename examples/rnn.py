"""Recurrent models, written for fxcost's examples and tests: LSTM, GRU and a plain tanh RNN.

- :func:`lstm_lm`: the word-level language model of PyTorch's ``word_language_model`` example
  (Zaremba, Sutskever & Vinyals, "Recurrent Neural Network Regularization", 2014): Embedding,
  dropout, a multi-layer ``nn.LSTM``, dropout, and a Linear decoder whose weight *is* the
  embedding's (weight tying: Press & Wolf, "Using the Output Embedding to Improve Language
  Models", 2017; Inan et al., 2017). Takes int64 token ids [B, T], returns logits [B, T, vocab].
- :func:`gru_classifier`: Embedding, a bidirectional ``nn.GRU`` (Cho et al., 2014), and a Linear on
  the final hidden states of both directions. Takes int64 token ids [B, T].
- :func:`rnn_tanh`: an Elman RNN (``nn.RNN``, tanh) over float features [B, T, F], classified from
  its last time step.

Usage: ``fxcost analyze examples/rnn.py:rnn_tanh --input 2x20x16``.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int = 1000, dim: int = 64, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, num_layers=layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.decoder = nn.Linear(dim, vocab)
        # Tied weights: one [vocab, dim] tensor serves as the embedding table and as the decoder's
        # weight, so the hidden size must equal the embedding size. Counted once.
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens):  # type: ignore[no-untyped-def]
        x = self.drop(self.encoder(tokens))  # [B, T, D]
        out, _ = self.rnn(x)  # (h, c) is dropped: each call starts from a zero state
        return self.decoder(self.drop(out))  # [B, T, vocab]


class GRUClassifier(nn.Module):
    def __init__(self, vocab: int = 1000, dim: int = 64, hidden: int = 64, num_classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, tokens):  # type: ignore[no-untyped-def]
        _, h = self.rnn(self.embed(tokens))  # h: [2 directions, B, hidden]
        return self.fc(torch.cat([h[0], h[1]], dim=-1))


class TanhRNN(nn.Module):
    def __init__(self, input_size: int = 16, hidden: int = 32, layers: int = 1, num_classes: int = 5) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden, num_layers=layers, nonlinearity="tanh", batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        out, _ = self.rnn(x)  # [B, T, hidden]
        return self.fc(out[:, -1])


def lstm_lm(vocab: int = 1000, dim: int = 64, layers: int = 2) -> LSTMLanguageModel:
    """A 2-layer LSTM language model with tied embedding/decoder weights."""
    return LSTMLanguageModel(vocab, dim, layers)


def gru_classifier(vocab: int = 1000, dim: int = 64, hidden: int = 64, num_classes: int = 4) -> GRUClassifier:
    """A bidirectional GRU text classifier."""
    return GRUClassifier(vocab, dim, hidden, num_classes)


def rnn_tanh(input_size: int = 16, hidden: int = 32, layers: int = 1, num_classes: int = 5) -> TanhRNN:
    """A plain tanh RNN sequence classifier on float features."""
    return TanhRNN(input_size, hidden, layers, num_classes)
