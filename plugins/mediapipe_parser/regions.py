"""Face regions from MediaPipe face-mesh landmarks: polygons per class, drawn into a label map.

numpy + OpenCV only; the landmark index sets come from mediapipe's own FACEMESH_* edge sets
(read at run time), so nothing here depends on a hard-coded mesh topology beyond that.
"""

from __future__ import annotations

import numpy as np

from splatrefine.schema import CELEBAMASK_HQ, IGNORE


def paths(edges: set[tuple[int, int]]) -> list[list[int]]:
    """Split an undirected edge set into its connected components, each as an ordered node list
    (a closed cycle is returned without repeating its first node; an open chain end to end)."""
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    seen: set[int] = set()
    out = []
    for start in sorted(adj, key=lambda n: (len(adj[n]) != 1, n)):  # chain ends first
        if start in seen:
            continue
        path, prev, node = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in adj[node] if n != prev and n not in seen]
            if not nxt:
                break
            prev, node = node, nxt[0]
            seen.add(node)
            path.append(node)
        out.append(path)
    return out


def polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def band(chains: list[list[int]], xy: np.ndarray) -> np.ndarray:
    """Two open chains (e.g. the upper and lower edge of a brow) joined into one polygon [N,2]."""
    if len(chains) == 1:
        return xy[chains[0]]
    a, b = chains[0], chains[1]
    if np.linalg.norm(xy[a[-1]] - xy[b[0]]) > np.linalg.norm(xy[a[-1]] - xy[b[-1]]):
        b = b[::-1]
    return xy[a + b]


def split_cycle(cycle: list[int], xy: np.ndarray, towards: np.ndarray) -> tuple[list[int], list[int]]:
    """Cut a closed cycle at its two farthest-apart nodes (the corners) into two chains running
    corner to corner; the first returned chain is the one nearer `towards` [2]."""
    pts = xy[cycle]
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    i, j = sorted(np.unravel_index(int(np.argmax(d)), d.shape))
    first = cycle[i:j + 1]
    second = (cycle[j:] + cycle[:i + 1])[::-1]
    if np.linalg.norm(xy[second].mean(0) - towards) < np.linalg.norm(xy[first].mean(0) - towards):
        first, second = second, first
    return first, second


def label_map(landmarks: np.ndarray, height: int, width: int, sets: dict[str, set]) -> np.ndarray:
    """Landmarks float [N,2] (pixel x, y) -> uint8 [H,W] CelebAMask-HQ labels, 255 outside the face.

    `sets` holds mediapipe's edge sets: face_oval, left_eye, right_eye, left_brow, right_brow,
    nose, lips. Painting order: skin (face oval), nose, brows, eyes, lips, mouth.
    """
    import cv2

    idx = CELEBAMASK_HQ.index
    out = np.full((height, width), IGNORE, np.uint8)

    def fill(poly: np.ndarray, cls: str) -> None:
        if len(poly) >= 3:
            cv2.fillPoly(out, [np.round(poly).astype(np.int32).reshape(-1, 1, 2)], int(idx(cls)))

    xy = landmarks
    fill(xy[paths(sets["face_oval"])[0]], "skin")
    nose = sorted({n for e in sets["nose"] for n in e})
    fill(cv2.convexHull(xy[nose].astype(np.float32)).reshape(-1, 2), "nose")
    fill(band(paths(sets["left_brow"]), xy), "l_brow")
    fill(band(paths(sets["right_brow"]), xy), "r_brow")
    left_eye = paths(sets["left_eye"])
    right_eye = paths(sets["right_eye"])
    fill(band(left_eye, xy), "l_eye")
    fill(band(right_eye, xy), "r_eye")
    eyes = np.concatenate([xy[sum(left_eye, [])], xy[sum(right_eye, [])]]).mean(0)
    cycles = sorted(paths(sets["lips"]), key=lambda c: polygon_area(xy[c]), reverse=True)
    if len(cycles) >= 2:
        outer, inner = cycles[0], cycles[1]
        outer_up, _ = split_cycle(outer, xy, eyes)
        inner_up, _ = split_cycle(inner, xy, eyes)
        fill(xy[outer], "l_lip")
        up, inn = xy[outer_up], xy[inner_up]
        if np.linalg.norm(up[-1] - inn[-1]) < np.linalg.norm(up[-1] - inn[0]):
            inn = inn[::-1]  # run the inner edge back from the corner where the outer edge ends
        fill(np.concatenate([up, inn]), "u_lip")
        fill(xy[inner], "mouth")
    return out
