#!/usr/bin/env python3
"""Cuts the small real sample shipped in data/sample/ from DBP15K fr-en.

Names come from the DBpedia URIs (CC BY-SA 3.0), never from the translated-name file. Pairs are
chosen by a hash of their URIs, not by id order, and every file is written in hashed order, so
nothing in the sample's layout reveals which entities correspond.

    scripts/make-sample.py ../shared/data/dbp15k_fr_en data/sample
"""
import hashlib, os, sys, urllib.parse

PAIRS, NEIGHBOURS = 250, 4


def h(s):
    return hashlib.sha256(s.encode()).hexdigest()


def last(uri):
    return uri.rstrip('/').rsplit('/', 1)[-1]


def main(src, dst):
    ents = [dict(l.rstrip('\n').split('\t') for l in open(os.path.join(src, f'ent_ids_{i}'), encoding='utf-8')) for i in (1, 2)]
    rels = []
    for i in (1, 2):
        p = os.path.join(src, 'uea_split', f'rel_ids_{i}')
        rels.append(dict(l.rstrip('\n').split('\t') for l in open(p, encoding='utf-8')) if os.path.exists(p) else {})
    triples = [[l.split() for l in open(os.path.join(src, f'triples_{i}'))] for i in (1, 2)]
    links = [l.split() for l in open(os.path.join(src, 'ref_ent_ids'))]
    chosen = sorted(links, key=lambda p: h(ents[0][p[0]] + ents[1][p[1]]))[:PAIRS]
    keep = [set(p[0] for p in chosen), set(p[1] for p in chosen)]
    for side in (0, 1):
        adj = {}
        for a, r, b in triples[side]:
            adj.setdefault(a, []).append(b)
            adj.setdefault(b, []).append(a)
        extra = set()
        for e in keep[side]:
            extra.update(sorted(adj.get(e, []), key=lambda x: h(ents[side][x]))[:NEIGHBOURS])
        keep[side] |= extra
    gold = [p for p in links if p[0] in keep[0] and p[1] in keep[1]]
    for side, name in ((0, 'a'), (1, 'b')):
        d = os.path.join(dst, name)
        os.makedirs(d, exist_ok=True)
        ident = lambda e: urllib.parse.unquote(last(ents[side][e]))
        with open(os.path.join(d, 'entities.tsv'), 'w', encoding='utf-8') as f:
            for e in sorted(keep[side], key=lambda e: h(ents[side][e])):
                f.write(f"{ident(e)}\t{ident(e).replace('_', ' ')}\n")
        with open(os.path.join(d, 'triples.tsv'), 'w', encoding='utf-8') as f:
            rows = [(a, r, b) for a, r, b in triples[side] if a in keep[side] and b in keep[side]]
            for a, r, b in sorted(rows, key=lambda t: h(ents[side][t[0]] + t[1] + ents[side][t[2]])):
                f.write(f"{ident(a)}\t{last(rels[side].get(r, 'rel' + r))}\t{ident(b)}\n")
    with open(os.path.join(dst, 'links.tsv'), 'w', encoding='utf-8') as f:
        for a, b in sorted(gold, key=lambda p: h(ents[0][p[0]] + ents[1][p[1]])):
            f.write(f"{urllib.parse.unquote(last(ents[0][a]))}\t{urllib.parse.unquote(last(ents[1][b]))}\n")
    print(f"{len(keep[0])} + {len(keep[1])} entities, {len(gold)} links -> {dst}")


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
