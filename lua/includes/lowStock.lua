--[[
  lowStock: the low-stock rule (库存低于阈值自动下架), shared by every script that moves stock or
  sets an item up. An item is at or below its level when its units are at most lowUnits, or at
  most lowPct percent of its total (initial stock plus restocks); with neither, never.
]]
local function atOrBelowLowStock(units, total, lowUnits, lowPct)
  if lowUnits then return units <= lowUnits end
  if lowPct then return units * 100 <= lowPct * total end
  return false
end
