# plot.gnuplot: bar chart of a copybench.py run (Debian: gnuplot-nox).
#
# copybench.py --png OUT.png calls it with two data files it writes itself:
#   gnuplot -e "datafile='time.dat'; ratiofile='ratio.dat'; outfile='out.png'; \
#               ncols=5; ngroups=4; charttitle='...'; note='...'; showratio=1" \
#           bench/harness/plot.gnuplot
# (ncols = columns incl. the group label; ngroups = data lines; note = a line
# printed at the bottom, e.g. the tools that failed)
# Each data file: a header line of quoted column titles ("group", one per tool,
# "limit"), then one line per workload/mode: "small cold" t1 t2 ... limit,
# "?" where a tool has no value (failed or not run).
#   time.dat   median seconds to data on disk (copy + final sync)
#   ratio.dat  the same divided by the limit of the workload (limit = 1)

if (!exists("datafile"))   datafile   = "time.dat"
if (!exists("ratiofile"))  ratiofile  = "ratio.dat"
if (!exists("outfile"))    outfile    = "copybench.png"
if (!exists("ncols"))      ncols      = 4
if (!exists("charttitle")) charttitle = "copybench"
if (!exists("showratio"))  showratio  = 1
if (!exists("ngroups"))    ngroups    = 2
if (!exists("note"))       note       = ""

set terminal pngcairo size 1280,(showratio ? 960 : 560) noenhanced font "sans,10"
set output outfile
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical noenhanced
set grid ytics
set xtics nomirror
set yrange [0:*]
set xrange [-0.6:ngroups-0.4]
if (strlen(note) > 0) { set label 1 note at screen 0.01, screen 0.012 left font "sans,9" }

if (showratio) { set multiplot layout 2,1 title charttitle } else { set title charttitle }

set ylabel "seconds (median; lower is better)"
plot for [i=2:ncols] datafile using i:xtic(1) title columnhead(i)

if (showratio) {
    unset title
    set ylabel "time / limit (limit = 1)"
    plot for [i=2:ncols-1] ratiofile using i:xtic(1) title columnhead(i), \
         1 with lines dt 2 lw 2 lc rgb "black" title "limit"
    unset multiplot
}
