"""Lane-level NumPy emulation of csrc/linear_2bit.cu's gemv_2bit_x16_kernel (one block of
16·kTiles rows): the fixed-point x slices, the byte registers of the codes, the PTX
fragment layout of mma.m16n8k32 (A rows g / g+8, k 4t.. / 16+4t..; B k 4t.. / 16+4t..,
column g; C rows g / g+8, columns 2t, 2t+1), the group closes and the epilogue, against
a float64 dense product.  x as two signed bytes (15-bit fixed point); at M <= 4 the
"paired" columns (B column 2b = row b's hi plane, 2b + 1 its lo plane, one mma), at
M = 5..8 the "split" ones (column b = row b, one mma per plane).  It checks the index scheme, not the CUDA code: run it after
changing the layout (python benchmarks/probe/emulate_x16.py; relative errors ~1e-4 =
the 15-bit fixed point of x)."""
import numpy as np
rng=np.random.default_rng(0)
def run(M,N,K,g,asym,kTiles=1):
    kUnits=4; kWarps=8
    rows=16*kTiles
    codes=rng.integers(0,4,(rows,K))
    G=K//g if g else 1
    scales=(rng.random((rows,G))*0.05+0.01).astype(np.float16).astype(np.float64)
    zeros=(rng.random((rows,G))*3) if asym else np.full((rows,G),1.5)
    x=rng.standard_normal((M,K)).astype(np.float32)
    # packed words
    words=np.zeros((rows,K//16),dtype=np.uint32)
    for w in range(K//16):
        for i in range(16): words[:,w]|=(codes[:,16*w+i].astype(np.uint32)<<(2*i))
    # fixed point
    X=np.zeros((8,K),dtype=np.int64); e=np.zeros(8,dtype=np.int64)
    for b in range(M):
        m=np.abs(x[b]).max(); E=np.frexp(m)[1]-1; e[b]=min(13-E,126)
        X[b]=np.rint(x[b].astype(np.float64)*2.0**e[b])
    # staged slices: slot[b][q] -> hi regs[4], lo regs[4] as byte arrays
    def slot(b,q):
        cols=X[b,16*q:16*q+16]
        hi=np.zeros((4,4),dtype=np.int64); lo=np.zeros((4,4),dtype=np.int64)
        for r in range(4):
            for i in range(4):
                v=int(cols[r+4*i]); hi[r,i]=(v+128)>>8; lo[r,i]=v-256*hi[r,i]
                assert -64<=hi[r,i]<=64 and -128<=lo[r,i]<128
        return hi,lo
    S=G if g else 1
    sx=np.zeros((8,S),dtype=np.int64)
    for b in range(M):
        for s_ in range(S):
            span=g if g else K
            sx[b,s_]=X[b,s_*span:(s_+1)*span].sum()
    units=K//64; chunks=(units+kUnits-1)//kUnits
    kPerGroup=g//64 if g else 1
    paired=M<=4
    acc=np.zeros((kWarps,kTiles,4,32))
    for warp in range(kWarps):
        nc=(chunks-warp+kWarps-1)//kWarps if warp<chunks else 0
        chi=np.zeros((kTiles,4,32),dtype=np.int64); clo=chi.copy()
        for i in range(nc):
            c=warp+i*kWarps; left=units-c*kUnits
            for j in range(kUnits):
                if j>=left: break
                u=c*kUnits+j
                # per lane fragments
                A=np.zeros((kTiles,2,32,4,4),dtype=np.int64)  # tile, h, lane, reg, byte
                Bh=np.zeros((32,4,4),dtype=np.int64); Bl=Bh.copy()
                for lane in range(32):
                    gg,t=lane>>2,lane&3
                    if paired:
                        if gg>>1<M: Bh[lane]=slot(gg>>1,4*u+t)[gg&1]
                    elif gg<M: Bh[lane],Bl[lane]=slot(gg,4*u+t)
                    for tile in range(kTiles):
                        for h in range(2):
                            w=int(words[gg+8*(2*tile+h), 4*u+t])
                            for r in range(4):
                                v=(w>>(2*r))&0x03030303
                                A[tile,h,lane,r]=[(v>>(8*bb))&255 for bb in range(4)]
                for tile in range(kTiles):
                    for pp in range(2):
                        # build A (16x32) and B (32x8) per PTX layout
                        Am=np.zeros((16,32),dtype=np.int64); Bhm=np.zeros((32,8),dtype=np.int64); Blm=Bhm.copy()
                        for lane in range(32):
                            gg,t=lane>>2,lane&3
                            a=[A[tile,0,lane,2*pp],A[tile,1,lane,2*pp],A[tile,0,lane,2*pp+1],A[tile,1,lane,2*pp+1]]
                            Am[gg,4*t:4*t+4]=a[0]; Am[gg+8,4*t:4*t+4]=a[1]; Am[gg,16+4*t:20+4*t]=a[2]; Am[gg+8,16+4*t:20+4*t]=a[3]
                            Bhm[4*t:4*t+4,gg]=Bh[lane,2*pp]; Bhm[16+4*t:20+4*t,gg]=Bh[lane,2*pp+1]
                            Blm[4*t:4*t+4,gg]=Bl[lane,2*pp]; Blm[16+4*t:20+4*t,gg]=Bl[lane,2*pp+1]
                        Ch=Am@Bhm; Cl=Am@Blm
                        for lane in range(32):
                            gg,t=lane>>2,lane&3
                            for ee,(rr,cc) in enumerate([(gg,2*t),(gg,2*t+1),(gg+8,2*t),(gg+8,2*t+1)]):
                                chi[tile,ee,lane]+=Ch[rr,cc]; clo[tile,ee,lane]+=Cl[rr,cc]
                if g and j%kPerGroup==kPerGroup-1:
                    grp=u//kPerGroup
                    for lane in range(32):
                        gg,t=lane>>2,lane&3
                        for tile in range(kTiles):
                            for ee in range(4):
                                h=2*tile+(ee>>1); row=gg+8*h; col=2*t+(ee&1)
                                if paired:
                                    if ee&1: continue
                                    ci=chi[tile,ee,lane]*256+chi[tile,ee+1,lane]; col=t
                                else:
                                    ci=chi[tile,ee,lane]*256+clo[tile,ee,lane]
                                acc[warp,tile,ee,lane]+=scales[row,grp]*(ci-zeros[row,grp]*sx[col,grp])
                    chi[:]=0; clo[:]=0
        if not g:
            for lane in range(32):
                gg,t=lane>>2,lane&3
                for tile in range(kTiles):
                    for ee in range(4):
                        h=2*tile+(ee>>1); row=gg+8*h
                        if paired:
                            acc[warp,tile,ee,lane]=0. if ee&1 else 256.*chi[tile,ee,lane]+chi[tile,ee+1,lane]
                        else:
                            acc[warp,tile,ee,lane]=256.*chi[tile,ee,lane]+clo[tile,ee,lane]
    y=np.full((M,rows),np.nan)
    tot=acc.sum(0)
    for tile in range(kTiles):
        for lane in range(32):
            gg,t=lane>>2,lane&3
            for ee in range(4):
                if paired and ee&1: continue
                row=gg+8*(2*tile+(ee>>1)); b=t if paired else 2*t+(ee&1)
                if b>=M: continue
                v=tot[tile,ee,lane]
                if not g: v=(v-zeros[row,0]*sx[b,0])*scales[row,0]
                y[b,row]=v*2.0**-e[b]
    gs=g if g else K
    W=(codes-np.repeat(zeros,gs,1))*np.repeat(scales,gs,1)
    ref=x.astype(np.float64)@W.T
    return np.linalg.norm(y-ref)/np.linalg.norm(ref)
if __name__ == '__main__':
  for case in [(2,16,64,64,False),(1,16,128,128,True),(3,16,256,128,True),(2,16,384,64,False),(1,16,192,0,True),(3,32,256,0,False,2),(2,32,128,128,True,2),
               (4,16,128,128,True),(6,16,256,64,False),(8,32,128,128,True,2),(5,16,192,0,True)]:
    err = run(*case)
    print(case, f'{err:.2e}')
    assert err < 1e-3, case
