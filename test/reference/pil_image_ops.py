#!/usr/bin/python3
"""Reference image operations for the data/metrics tests, run with Debian's /usr/bin/python3
(PIL 9.4, numpy, torch 1.13 CPU). Reads a JSON list of jobs from argv[1], writes raw outputs to the
paths the jobs name and prints a JSON list of per-job results.

Jobs (all raw buffers are uint8 unless stated):
  resize:  {in, w, h, mode: 'RGB'|'L', ow, oh, out}  PIL Image.resize(BICUBIC), what torchvision's
           Resize((h, w), interpolation=3) calls on a PIL image.
  decode:  {path, out} -> {w, h}                     Image.open(path).convert('RGB'), HWC bytes.
  gray:    {in, w, h, out}                           Image.convert('L') of an RGB image.
  write:   {in, w, h, mode, out, format, quality?}   save raw bytes as PNG/JPEG with PIL; mode 'P' gets
           VOC's colour palette (index i -> a colour unlike i), JPEG uses PIL's default 4:2:0.
  canvas:  {in, out_canvas, out_target}              in: 4 float32 cells [3][111][111] (TL, TR, BL, BR);
           the reference's canvas code (torch.ones, paste, (c - mean64)/std64, .float()) -> float32
           [3][224][224]; and its ground truth clip((x*std + mean)*255, 0, 255).int() of the float64
           canvas, bottom-right [3][111][111] as uint8.
  ssim:    {a, b} -> {ssim}                          Wang et al. SSIM, written independently with numpy:
           explicit 11x11 windows (2-D Gaussian, sigma 1.5), valid positions, per channel, mean.
"""
import json
import sys

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def resize(job):
    ch = 3 if job['mode'] == 'RGB' else 1
    data = open(job['in'], 'rb').read()
    assert len(data) == job['w'] * job['h'] * ch
    im = Image.frombytes(job['mode'], (job['w'], job['h']), data)
    open(job['out'], 'wb').write(im.resize((job['ow'], job['oh']), Image.BICUBIC).tobytes())
    return {}


def decode(job):
    im = Image.open(job['path']).convert('RGB')
    open(job['out'], 'wb').write(im.tobytes())
    return {'w': im.size[0], 'h': im.size[1]}


def gray(job):
    im = Image.frombytes('RGB', (job['w'], job['h']), open(job['in'], 'rb').read())
    open(job['out'], 'wb').write(im.convert('L').tobytes())
    return {}


def voc_palette():
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def write(job):
    ch = {'RGB': 3, 'L': 1, 'P': 1, 'RGBA': 4, 'LA': 2}[job['mode']]
    data = open(job['in'], 'rb').read()
    assert len(data) == job['w'] * job['h'] * ch
    im = Image.frombytes(job['mode'], (job['w'], job['h']), data)
    if job['mode'] == 'P':
        im.putpalette(voc_palette())
    kw = {'quality': job['quality']} if 'quality' in job else {}
    im.save(job['out'], format=job['format'], **kw)
    return {}


def canvas(job):
    import torch
    cells = np.fromfile(job['in'], dtype=np.float32).reshape(4, 3, 111, 111)
    c = torch.ones((3, 224, 224))
    t = [torch.from_numpy(x.copy()) for x in cells]
    c[:, :111, :111] = t[0]
    c[:, :111, -111:] = t[1]
    c[:, -111:, :111] = t[2]
    c[:, -111:, -111:] = t[3]
    c = (c - MEAN[:, None, None]) / STD[:, None, None]  # float64, as in the reference
    assert c.dtype == torch.float64
    c.float().numpy().astype(np.float32).tofile(job['out_canvas'])
    hwc = torch.einsum('chw->hwc', c)
    gt = torch.clip((hwc * STD + MEAN) * 255, 0, 255).int()
    crop = gt[113:, 113:].permute(2, 0, 1).numpy().astype(np.uint8)
    crop.tofile(job['out_target'])
    return {}


def ssim_numpy(a, b):
    win, sigma = 11, 1.5
    r = np.arange(win) - (win - 1) / 2
    g2 = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma * sigma))
    g2 /= g2.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for ch in range(3):
        x = a[ch].astype(np.float64)
        y = b[ch].astype(np.float64)
        n = x.shape[0] - win + 1
        wx = np.lib.stride_tricks.sliding_window_view(x, (win, win))
        wy = np.lib.stride_tricks.sliding_window_view(y, (win, win))
        mx = (wx * g2).sum(axis=(2, 3))
        my = (wy * g2).sum(axis=(2, 3))
        vx = (wx ** 2 * g2).sum(axis=(2, 3)) - mx ** 2
        vy = (wy ** 2 * g2).sum(axis=(2, 3)) - my ** 2
        cov = (wx * wy * g2).sum(axis=(2, 3)) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        assert s.shape == (n, n)
        vals.append(s.mean())
    return float(np.mean(vals))


def ssim(job):
    a = np.fromfile(job['a'], dtype=np.uint8).reshape(3, 111, 111)
    b = np.fromfile(job['b'], dtype=np.uint8).reshape(3, 111, 111)
    return {'ssim': ssim_numpy(a, b)}


OPS = {'resize': resize, 'decode': decode, 'gray': gray, 'write': write, 'canvas': canvas, 'ssim': ssim}

if __name__ == '__main__':
    jobs = json.load(open(sys.argv[1]))
    print(json.dumps([OPS[j['op']](j) for j in jobs]))
