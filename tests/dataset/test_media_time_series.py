"""Time-series chat data (issue 16): loaders, the placeholder expansion (checked against the
encoder transformers runs), labels (checked against the tokenizer's own chat template) and
one-line ``file:line`` errors."""
from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import torch
from transformers import AutoModel, HubertConfig, Wav2Vec2Config

from xtuner.dataset.media import (
    TS_TOKENS,
    MediaJsonlDataset,
    TimeSeriesTokenizeFunction,
    load_signal,
    media_collate_fn,
    signal_info,
)
from xtuner.testing import DEFAULT_CORPUS, train_tiny_tokenizer
from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import DataError


def tiny_encoder_config(**kw):
    return Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                          conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                          num_conv_pos_embedding_groups=2, apply_spec_augment=False,
                          mask_time_prob=0.0, layerdrop=0.0, feat_extract_norm="layer",
                          do_stable_layer_norm=True, **kw)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tiny_tokenizer(DEFAULT_CORPUS, tmp_path_factory.mktemp("ts_tok"))


def write_wav(path, signal, rate=100, channels=1):
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def ts_record(url, question="What is this signal?<TS_CONTEXT>", answer="A sine wave.", **part):
    return {"messages": [
        {"role": "user", "content": [
            {"type": "time_series_url", "time_series_url": {"url": url, **part}},
            {"type": "text", "text": question}]},
        {"role": "assistant", "content": answer}]}


def test_loaders_read_wav_csv_npy(tmp_path):
    x = np.sin(np.arange(120) / 4).astype(np.float32)
    write_wav(tmp_path / "a.wav", x, rate=250)
    np.save(tmp_path / "a.npy", np.stack([x, -x], 1))
    (tmp_path / "a.csv").write_text("u,v\n" + "".join(f"{a},{-a}\n" for a in x))
    wav, rate = load_signal(tmp_path / "a.wav")
    assert rate == 250 and wav.shape == (120, 1)
    np.testing.assert_allclose(wav[:, 0], x, atol=1e-4)
    for name in ("a.npy", "a.csv"):
        data, rate = load_signal(tmp_path / name)
        assert rate is None and data.shape == (120, 2)
        np.testing.assert_allclose(data[:, 1], -x, atol=1e-6)
    assert signal_info(tmp_path / "a.wav") == (120, 250)
    assert signal_info(tmp_path / "a.npy") == (120, None)
    assert signal_info(tmp_path / "a.csv") == (120, None)


def test_loader_errors_are_one_line(tmp_path):
    (tmp_path / "x.txt").write_text("1\n2\n")
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    cases = {tmp_path / "missing.wav": "no such file", tmp_path / "x.txt": "expected one of",
             tmp_path / "bad.csv": "bad.csv:2: not a row of numbers"}
    for path, words in cases.items():
        with pytest.raises(DataError) as info:
            load_signal(path)
        assert words in str(info.value) and "\n" not in str(info.value)
    try:
        import soundfile  # noqa: F401
    except ImportError:
        (tmp_path / "a.mp3").write_bytes(b"\xff\xfb")
        with pytest.raises(DataError, match="needs the soundfile package"):
            load_signal(tmp_path / "a.mp3")


@pytest.mark.parametrize("config", [tiny_encoder_config(),
                                    tiny_encoder_config(add_adapter=True, num_adapter_layers=2,
                                                        adapter_stride=2, output_hidden_size=16),
                                    HubertConfig(hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=32,
                                                 conv_dim=(8, 8, 8), conv_stride=(3, 2, 2),
                                                 conv_kernel=(5, 3, 2),
                                                 num_conv_pos_embeddings=8,
                                                 num_conv_pos_embedding_groups=2,
                                                 mask_time_prob=0.0)],
                         ids=["wav2vec2", "wav2vec2-adapter", "hubert"])
def test_context_tokens_equal_the_encoder_outputs(tmp_path, tokenizer, config):
    """For every signal length the span holds exactly as many context tokens as the real
    encoder outputs features."""
    encoder = AutoModel.from_config(config).eval()
    fn = TimeSeriesTokenizeFunction(tokenizer, encoder_config=config, media_root=str(tmp_path))
    ids = tokenizer.convert_tokens_to_ids(TS_TOKENS)
    for length in (45, 50, 64, 99, 157, 203, 777):
        np.save(tmp_path / f"{length}.npy", np.random.default_rng(length).normal(size=length))
        sample = fn(ts_record(f"{length}.npy"))
        with torch.no_grad():
            features = encoder(input_values=fn.load(sample["media"][0])[None]).last_hidden_state
        context = sample["input_ids"].count(ids[1])
        assert context == features.shape[1] >= 1, length
        start = sample["input_ids"].index(ids[0])
        assert sample["input_ids"][start:start + context + 2] == [ids[0]] + [ids[1]] * context \
            + [ids[2]]


def test_ids_are_the_chat_templates_and_only_answers_train(tmp_path, tokenizer):
    """The ids are what the tokenizer's own ``apply_chat_template`` gives for the expanded
    conversation; labels are the assistant turns, never a media token."""
    write_wav(tmp_path / "s.wav", np.sin(np.arange(300) / 2))
    config = tiny_encoder_config()
    fn = TimeSeriesTokenizeFunction(tokenizer, encoder_config=config, media_root=str(tmp_path))
    record = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look: <TS_CONTEXT> ok?"},
                                     {"type": "time_series_url",
                                      "time_series_url": {"url": "s.wav"}}]},
        {"role": "assistant", "content": "A fast sine."},
        {"role": "user", "content": "And the rate?"},
        {"role": "assistant", "content": "100 Hz."}]}
    sample = fn(record)
    span = fn.span(fn.num_features(sample["media"][0]))
    expanded = [dict(m, content=m["content"]) if isinstance(m["content"], str) else
                {"role": m["role"], "content": f"Look: {span} ok?"} for m in record["messages"]]
    assert sample["input_ids"] == tokenizer.apply_chat_template(expanded, tokenize=True,
                                                                return_dict=False)
    trained = [i for i, label in zip(sample["input_ids"], sample["labels"])
               if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "A fast sine.<|im_end|>\n100 Hz.<|im_end|>\n"
    assert sample["media"][0]["sampling_rate"] == 100  # the WAV header's rate


def test_text_only_records_and_json_rate(tmp_path, tokenizer):
    np.save(tmp_path / "a.npy", np.zeros(200))
    fn = TimeSeriesTokenizeFunction(tokenizer, encoder_config=tiny_encoder_config(),
                                    media_root=str(tmp_path))
    text = fn({"messages": [{"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello."}]})
    assert text["media"] == [] and fn.context_token_id not in text["input_ids"]
    assert fn(ts_record("a.npy", sampling_rate=36))["media"][0]["sampling_rate"] == 36


def test_max_length_cuts_text_after_media_only(tmp_path, tokenizer):
    np.save(tmp_path / "a.npy", np.zeros(400))
    config = tiny_encoder_config()
    full = TimeSeriesTokenizeFunction(tokenizer, encoder_config=config,
                                      media_root=str(tmp_path))(ts_record("a.npy"))
    end = full["input_ids"].index(tokenizer.convert_tokens_to_ids("<|/ts|>")) + 1
    cut = TimeSeriesTokenizeFunction(tokenizer, encoder_config=config, media_root=str(tmp_path),
                                     max_length=end + 2)(ts_record("a.npy"))
    assert cut["input_ids"] == full["input_ids"][:end + 2]
    assert cut["labels"] == full["labels"][:end + 2]
    with pytest.raises(DataError, match="media spans end at token"):
        TimeSeriesTokenizeFunction(tokenizer, encoder_config=config, media_root=str(tmp_path),
                                   max_length=end - 1)(ts_record("a.npy"))


def test_bad_records_are_one_line_with_file_and_line(tmp_path, tokenizer):
    np.save(tmp_path / "ok.npy", np.zeros(200))
    np.save(tmp_path / "short.npy", np.zeros(44))  # the encoder needs 45 samples
    (tmp_path / "ok.txt").write_text("1\n2\n")
    fn = dict(type=TimeSeriesTokenizeFunction, tokenizer=tokenizer,
              encoder_config=tiny_encoder_config(), media_root=str(tmp_path))
    cases = [(ts_record("gone.wav"), "gone.wav: no such file"),
             (ts_record("ok.npy", question="no placeholder"), "1 time_series_url part(s) but 0"),
             (ts_record("ok.npy", question="<|ts|><TS_CONTEXT>"), "do not write the special"),
             (ts_record("ok.txt"), "expected one of"),
             (ts_record("short.npy"), "short.npy: too short for the encoder")]
    for record, words in cases:
        data = tmp_path / "data.jsonl"
        data.write_text(json.dumps(ts_record("ok.npy")) + "\n" + json.dumps(record) + "\n")
        with pytest.raises(DataError) as info:
            MediaJsonlDataset(str(data), fn)
        message = str(info.value)
        assert message.startswith(f"{data}:2: ") and words in message, message
        assert "\n" not in message


def test_packed_rows_hold_whole_samples_and_their_media(tmp_path, tokenizer):
    lines = []
    for i, length in enumerate((120, 260, 0, 180)):
        if length:
            np.save(tmp_path / f"{i}.npy", np.sin(np.arange(length) / (i + 1)))
            lines.append(ts_record(f"{i}.npy", answer=f"Signal {i}."))
        else:
            lines.append({"messages": [{"role": "user", "content": "Hi"},
                                       {"role": "assistant", "content": "Hello."}]})
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    fn = dict(type=TimeSeriesTokenizeFunction, tokenizer=tokenizer,
              encoder_config=tiny_encoder_config(), media_root=str(tmp_path), max_length=96)
    alone = MediaJsonlDataset(str(data), fn)
    packed = MediaJsonlDataset(str(data), fn, pack_to_max_length=True)
    assert len(packed) < len(alone)
    seen = []
    for row in (packed[i] for i in range(len(packed))):
        bounds = row["cumulative_len"]
        assert bounds[-1] == len(row["input_ids"]) <= 96
        media = iter(row["media"])
        for start, end in zip(bounds[:-1], bounds[1:]):
            match = [s for s in (alone[i] for i in range(len(alone)))
                     if s["input_ids"] == row["input_ids"][start:end]]
            assert len(match) == 1 and match[0]["labels"] == row["labels"][start:end]
            for signal in match[0]["media"]:
                assert torch.equal(next(media), signal)
            seen.append(start)
    assert len(seen) == 4
    batch = media_collate_fn([packed[0], packed[1]], use_varlen_attn=True)["data"]
    assert len(batch["media"]) == len(packed[0]["media"]) + len(packed[1]["media"])
